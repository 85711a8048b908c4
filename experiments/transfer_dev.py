"""Transfer measured without the reported clips: real machines' training normals against the same clips with faults
added, to choose an encoder (or an epoch of one) for cold start.

    python experiments/transfer_dev.py --encoder pretrained|RUN|CHECKPOINT [--encoder ...] [--real-dev ROOT]

The real development sets' test clips are what `cold_start.py` and the checks report; choosing on them would
report a choice made on the clips reported. Here each real machine's *training* normals alone make a development
set: the earlier 70 % in file order are enrolled, the later 30 % (later recordings, with the shift between
recordings in them) are its normal test clips, and each of those, with one added fault of each of three kinds, its
anomalies:
- a whine: a tone of 300-6000 Hz wandering by 1 %, 10-30 dB under the clip;
- knocks: a train of 3-20 struck resonances (1-6 kHz, decay 3-15 ms) a second, peaks 0-20 dB under the clip's peak;
- rubbing: noise in a third-octave band at 500-6000 Hz, on and off (0.1-0.5 s spells), 6-24 dB under the clip.
Levels and frequencies are drawn per clip (seeded), wide enough that no kind is always heard or always missed. Each
machine is enrolled as `ssad enroll` does (cold_start.enrol), the scorers of `ssad detector --pretrained` score its
clips, and AUC per machine, per kind and pooled, is written to --out (csv). The design above was fixed before any
encoder was measured with it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

from cold_start import SCORERS, append_rows, encoder_identity, enrol, set_outputs  # noqa: E402

#: real development machines: folder under the real-dev root -> machine type in the development set
MACHINES = {"lathe_vmc/lathe": "lathe", "lathe_vmc/vmc": "vmc", "mimii_mini/machine": "mimii",
            "fault3/machine1": "fault3m1", "fault3/machine2": "fault3m2", "fault3/machine3": "fault3m3"}
HELD_SHARE = 0.3
KINDS = ("whine", "knocks", "rubbing")
SR = 16000


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def whine(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tone of 300-6000 Hz, wandering by 1 %, 10-30 dB under the clip."""
    t = np.arange(len(x)) / SR
    f0 = math.exp(rng.uniform(math.log(300), math.log(6000)))
    wander = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * wander) / SR
    return np.sqrt(2) * _rms(x) * 10 ** (-rng.uniform(10, 30) / 20) * np.sin(phase)


def knocks(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3-20 struck resonances a second (1-6 kHz, decay 3-15 ms), peaks 0-20 dB under the clip's peak."""
    rate, freq, decay = rng.uniform(3, 20), rng.uniform(1000, 6000), rng.uniform(0.003, 0.015)
    n = len(x)
    ring_t = np.arange(int(decay * 6 * SR)) / SR
    ring = np.exp(-ring_t / decay) * np.sin(2 * np.pi * freq * ring_t)
    starts = np.arange(rng.uniform(0, 1 / rate), n / SR, 1 / rate)
    starts = (starts + rng.normal(0, 0.1 / rate, len(starts))).clip(0, n / SR - 1e-3)
    out = np.zeros(n)
    for s in (starts * SR).astype(int):
        end = min(n, s + len(ring))
        out[s:end] += ring[: end - s] * rng.uniform(0.6, 1.0)
    peak = np.max(np.abs(x)) + 1e-12
    return out / (np.max(np.abs(out)) + 1e-12) * peak * 10 ** (-rng.uniform(0, 20) / 20)


def rubbing(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise in a third-octave band at 500-6000 Hz, on and off in 0.1-0.5 s spells, 6-24 dB under the clip."""
    from scipy.signal import butter, sosfilt

    centre = math.exp(rng.uniform(math.log(500), math.log(6000)))
    sos = butter(4, [centre * 2 ** (-1 / 6), min(centre * 2 ** (1 / 6), 0.95 * SR / 2)], btype="band", fs=SR,
                 output="sos")
    noise = sosfilt(sos, rng.standard_normal(len(x)))
    spell = int(rng.uniform(0.1, 0.5) * SR)
    gate = np.repeat(rng.random(len(x) // spell + 1) < 0.6, spell)[: len(x)].astype(float)
    gate = np.convolve(gate, np.hanning(256) / np.hanning(256).sum(), mode="same")
    noise = noise / _rms(noise) * gate
    return noise * _rms(x) * 10 ** (-rng.uniform(6, 24) / 20)


FAULTS = {"whine": whine, "knocks": knocks, "rubbing": rubbing}


def build(real_dev: Path, out: Path, seed: int = 0) -> Path:
    """The development root (DCASE layout) from the real sets' training normals; made once, reused after."""
    import soundfile as sf

    done = out / "DONE"
    if done.is_file():
        return out
    rng = np.random.default_rng(seed)
    for folder, machine in MACHINES.items():
        files = sorted((real_dev / folder / "train").glob("normal_*.wav"))
        if not files:
            raise SystemExit(f"{real_dev / folder / 'train'}: no normal_*.wav (build the real development sets first)")
        held = math.ceil(HELD_SHARE * len(files))
        for part in ("train", "test"):
            (out / machine / part).mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            x, sr = sf.read(path, dtype="float64")
            if sr != SR or x.ndim != 1:
                raise SystemExit(f"{path}: expected mono {SR} Hz, got {sr} Hz, shape {x.shape}")
            if i < len(files) - held:
                sf.write(out / machine / "train" / f"normal_id_00_{i:08d}.wav", x, SR, subtype="PCM_16")
                continue
            sf.write(out / machine / "test" / f"normal_id_00_{i:08d}.wav", x, SR, subtype="PCM_16")
            for k, kind in enumerate(KINDS):
                y = x + FAULTS[kind](x, rng)
                y = y / max(1.0, np.max(np.abs(y)) / 0.999)
                sf.write(out / machine / "test" / f"anomaly_id_00_{k}{i:07d}.wav", y, SR, subtype="PCM_16")
    done.write_text("ok\n")
    return out


def measure(encoder: str, root: Path, cache: Path) -> list[dict]:
    """AUC per machine, scorer and fault kind (and all kinds pooled) of `encoder` enrolled cold on the dev root."""
    from sklearn.metrics import roc_auc_score

    from ssad.audio.clips import clip_key
    from ssad.encoder import load
    from ssad.scoring import select_input

    identity = encoder_identity(encoder)
    model = load(encoder)
    train, train_out, test, test_out = set_outputs(model, root, cache / identity["sha256"][:16])
    ids = np.array([clip_key(c) for c in train])
    test_ids = np.array([clip_key(c) for c in test])
    detector = enrol(model, train_out, ids, SCORERS)
    kinds = np.array(["normal" if c.label == "normal" else KINDS[int(Path(c.path).stem.split("_")[-1][0])]
                      for c in test])
    rows = []
    for name, scorer in detector.scorers.items():
        scores = scorer.score(select_input(scorer, test_out), test_ids.tolist())
        for machine in sorted(set(test_ids.tolist())):
            mine = test_ids == machine
            for kind in (*KINDS, "all"):
                pick = mine & ((kinds == "normal") | (kinds == kind) if kind != "all" else mine)
                y = kinds[pick] != "normal"
                rows.append({"encoder": encoder, "sha256": identity["sha256"][:16], "scorer": name,
                             "machine": machine.split("/")[0], "kind": kind,
                             "auc": round(float(roc_auc_score(y, scores[pick])), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", action="append", required=True, help="an encoder (as cold_start.py takes); repeat")
    parser.add_argument("--real-dev", type=Path, default=Path(os.environ.get("SSAD_REAL_DEV", "")))
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "transfer_dev")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "transfer_dev.csv")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    root = build(args.real_dev, args.work / "root")
    rows = []
    for encoder in args.encoder:
        rows += measure(encoder, root, args.work / "outputs")
        mine = [r for r in rows if r["encoder"] == encoder and r["kind"] == "all"]
        for scorer in SCORERS:
            aucs = {r["machine"]: r["auc"] for r in mine if r["scorer"] == scorer}
            print(f"{encoder}  {scorer:9s} mean {np.mean(list(aucs.values())):.3f}  "
                  + " ".join(f"{m} {a:.3f}" for m, a in aucs.items()), flush=True)
    append_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
