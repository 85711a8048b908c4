"""Choosing the shipped encoder on real recordings that no check reports: two public sets outside the development sets.

    python experiments/selection_real.py --mirror-root MIRRORS --encoder pretrained --encoder RUN [...]

The real development sets (`../shared/real-dev`) are what `cold_start.py`, `alarms.py` and the checks report, so an
encoder chosen on them is a choice made on the clips reported. These two sets are read by nothing else here:
- `mimii_fan`: MIMII fan id_00, 20 normal and 20 abnormal 10-s clips (github.com/Mohxen/sound-anomaly-detection,
  `sample_dataset/fan/id_00`; 8 channels, channel 0 kept as DCASE 2020 did);
- `dcase23_s00`: one DCASE 2023 development section, 100 normal and 100 anomalous test clips over its source and
  target domains (github.com/hubtru/dcase2023Challenge, `data/dcase2023t2/dev_data/raw/Trial2_bearing`; the
  `pat_NN` attribute in its names is the valve's).
Neither has training clips of its own, so each is measured in two folds: the even (then odd) normals in file order
enrolled into an empty detector of its own as `ssad enroll` does (`cold_start.enrol`), the other normals and every anomaly
scored. AUC per scorer, and false alarms / recall at the enrolled threshold, per set and fold, go to --out.
Fetch the two repositories first (the search tool's fetch verb); MIRRORS holds `<owner>+<name>/repo`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

from cold_start import SCORERS, append_rows, encoder_identity, enrol, set_outputs  # noqa: E402


def _mimii(name: str) -> str | None:
    """`sample_dataset/fan/id_00/{normal,abnormal}/N.wav` -> our name, None for other files."""
    parts = name.split("/")
    if len(parts) < 3 or parts[-3] != "id_00" or not name.endswith(".wav"):
        return None
    label = {"normal": "normal", "abnormal": "anomaly"}.get(parts[-2])
    return f"{label}_{Path(name).stem}" if label else None


def _dcase23(name: str) -> str | None:
    """`.../section_00_{source,target}_test_{normal,anomaly}_NNNN_*.wav` -> our name (label, domain, number)."""
    stem = Path(name).stem
    if not (name.endswith(".wav") and stem.startswith("section_00_")):
        return None
    fields = stem.split("_")  # section 00 domain test label number attribute...
    return f"{fields[4]}_{fields[2]}{fields[5]}"


#: set -> (repository, path prefix in it, file name -> our name)
SOURCES: dict[str, tuple[str, str, Callable[[str], str | None]]] = {
    "mimii_fan": ("Mohxen/sound-anomaly-detection", "sample_dataset/fan/id_00/", _mimii),
    "dcase23_s00": ("hubtru/dcase2023Challenge", "data/dcase2023t2/dev_data/raw/", _dcase23),
}
FOLDS = 2


def _git(mirror: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={mirror}", *args], check=True, capture_output=True).stdout


def _mirror_files(mirror: Path, prefix: str) -> list[str]:
    listing = _git(mirror, "ls-tree", "-r", "--name-only", "HEAD", prefix).decode()
    return sorted(line for line in listing.splitlines() if line)


def _mirror_clip(mirror: Path, path: str) -> tuple[np.ndarray, int]:
    """Channel 0 of a wav file at the mirror's HEAD, as int16, and its sample rate."""
    import io

    import soundfile as sf

    x, sr = sf.read(io.BytesIO(_git(mirror, "show", f"HEAD:{path}")), dtype="int16", always_2d=True)
    return x[:, 0], sr


def build(mirror_root: Path, out: Path) -> dict[str, Path]:
    """Per fold a DCASE-layout root (`<set>/train/normal_id_00_*`, `<set>/test/...`); made once, reused after."""
    import soundfile as sf

    roots = {f"f{k}": out / f"f{k}" for k in range(FOLDS)}
    if (out / "DONE").is_file():
        return roots
    for name, (repo, prefix, rename) in SOURCES.items():
        mirror = mirror_root / repo.replace("/", "+") / "repo"
        if not mirror.is_dir():
            raise SystemExit(f"{mirror}: not found; fetch github:{repo} first (the search tool's fetch verb)")
        clips = sorted((new, path) for path in _mirror_files(mirror, prefix) if (new := rename(path)))
        normal = [c for c in clips if c[0].startswith("normal_")]
        anomaly = [c for c in clips if c[0].startswith("anomaly_")]
        if not normal or not anomaly:
            raise SystemExit(f"{mirror}: no normal and anomalous clips under {prefix}")
        audio = {path: _mirror_clip(mirror, path) for _, path in clips}  # every clip is in both folds
        for k, root in enumerate(roots.values()):
            parts = {"train": normal[k::FOLDS], "test": [c for i, c in enumerate(normal) if i % FOLDS != k] + anomaly}
            for part, chosen in parts.items():
                (root / name / part).mkdir(parents=True, exist_ok=True)
                for i, (new, path) in enumerate(chosen):
                    x, sr = audio[path]
                    label = new.split("_")[0]
                    sf.write(root / name / part / f"{label}_id_00_{i:08d}.wav", x, sr, subtype="PCM_16")
    (out / "DONE").write_text("ok\n")
    return roots


def measure(encoder: str, roots: dict[str, Path], cache: Path) -> list[dict]:
    """AUC and false alarms / recall at the threshold, per set, fold and scorer, of `encoder` enrolled cold."""
    from sklearn.metrics import roc_auc_score

    from ssad.audio.clips import clip_key
    from ssad.encoder import load
    from ssad.scoring import select_input

    identity = encoder_identity(encoder)
    model = load(encoder)
    rows = []
    for fold, root in roots.items():
        train, train_out, test, test_out = set_outputs(model, root, cache / identity["sha256"][:16])
        train_ids = np.array([clip_key(c) for c in train])
        ids = np.array([clip_key(c) for c in test])
        anomalous = np.array([c.label != "normal" for c in test])
        for machine in sorted(set(ids.tolist())):  # each into a detector of its own, as the checks enrol
            own = train_ids == machine
            detector = enrol(model, {k: v[own] for k, v in train_out.items()}, train_ids[own], SCORERS)
            mine = ids == machine
            for name, scorer in detector.scorers.items():
                scores = scorer.score(select_input(scorer, {k: v[mine] for k, v in test_out.items()}),
                                      ids[mine].tolist())
                flagged = scores > detector.thresholds[name].threshold_[machine]
                y = anomalous[mine]
                rows.append({"encoder": identity["source"], "sha256": identity["sha256"][:16], "set": machine.split("/")[0],
                             "fold": fold, "scorer": name, "auc": round(float(roc_auc_score(y, scores)), 4),
                             "false_alarms": round(float(flagged[~y].mean()), 4),
                             "recall": round(float(flagged[y].mean()), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", action="append", required=True, help="an encoder (as cold_start.py takes); repeat")
    parser.add_argument("--mirror-root", type=Path, required=True, help="folder of the fetched <owner>+<name>/repo mirrors")
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "selection_real")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "selection_real.csv")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    roots = build(args.mirror_root, args.work / "roots")
    rows = []
    for encoder in args.encoder:
        mine = measure(encoder, roots, args.work / "outputs")
        rows += mine
        for scorer in SCORERS:
            by_set = {s: np.mean([r["auc"] for r in mine if r["set"] == s and r["scorer"] == scorer])
                      for s in SOURCES}
            print(f"{encoder}  {scorer:9s} " + " ".join(f"{s} {a:.3f}" for s, a in by_set.items()), flush=True)
    append_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
