"""Realism: statistics of real machine recordings beside a synthetic corpus's, machine type by machine type.

The synthetic default is judged by what real audio looks like, never by the classifier's scores. For each
normal clip this measures:
- lines: the strongest narrow spectral lines (Welch PSD, ~2 Hz bins): prominence over the local median
  (dB), -3 dB width (Hz), and how many stand 10 dB or more above their surroundings;
- level spread: the clip-to-clip standard deviation of each band's mean log-mel level within one ID
  (median over 128 mel bands, dB), and the ratio of between-ID to within-ID spread of those levels;
- background movement: the std over the clip of each second's noise floor (the 10th percentile of
  50-ms frame levels), dB: how much the ambience underneath the machine moves within a clip;
- impulsiveness: the 99th minus the 50th percentile of 20-ms frame levels (dB): clicks and knocks.

The fixed reference detectors' figures (the DCASE 2020 baseline AE, `../shared/acceptance/reference_ae.py`, and
the floor, `sanity_synth.py`) are read from their own output, `--reference "AE, seed 3=ae.log"`, and tabled
beside the published DCASE 2020 development figures.

Usage: python experiments/realism.py --synth new=ROOT [--synth old=ROOT2] [--real-samples DIR] [--real-dev DIR]
       [--reference LABEL=LOG ...]
Writes experiments/results/realism.{md,csv}. Real audio: ../shared/real-samples/dcase2020 (genuine DCASE 2020
test clips, normals only here) and, if built, the real development sets (../shared/real-dev/build.py).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from scipy import ndimage, signal

from ssad.core.atomic import write_text_atomic

RATE = 16000
WELCH_SEGMENT = 8192  # ~2 Hz bins: wide enough for 1-s real clips, narrow enough to resolve a drifting line
LINE_BASELINE_HZ = 50.0  # a line's prominence is measured against the median PSD over this width
TOP_LINES = 5
NAME = re.compile(r"normal_id_(\d+)_\d+\.wav$")
STATS = ("line_prominence_db", "line_width_hz", "lines_10db", "level_spread_db", "between_within",
         "background_move_db", "impulsiveness_db")
STAT_TITLES = {
    "line_prominence_db": "prominence of the 5 strongest lines (dB)",
    "line_width_hz": "-3 dB width of those lines (Hz)",
    "lines_10db": "lines >= 10 dB above their surroundings",
    "level_spread_db": "clip-to-clip spread of band levels within an ID (dB)",
    "between_within": "between-ID / within-ID spread of band levels",
    "background_move_db": "noise-floor movement within a clip (dB)",
    "impulsiveness_db": "impulsiveness: p99 - p50 of 20-ms levels (dB)",
}
_MEL = torchaudio.transforms.MelSpectrogram(RATE, n_fft=1024, hop_length=512, n_mels=128, power=2.0)


def read(path: Path) -> np.ndarray:
    """A clip as float mono at 16 kHz (channel 0, as the real-dev builder keeps)."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = torch.from_numpy(np.ascontiguousarray(x[:, 0]))
    if sr != RATE:
        x = torchaudio.functional.resample(x, sr, RATE)
    return x.numpy()


def line_stats(x: np.ndarray) -> tuple[float, float, float]:
    """Median prominence (dB) and -3 dB width (Hz) of the strongest lines, and the count of 10-dB lines."""
    freqs, psd = signal.welch(x, RATE, nperseg=min(WELCH_SEGMENT, len(x)), noverlap=None)
    db = 10 * np.log10(psd + 1e-20)
    df = freqs[1] - freqs[0]
    above = db - ndimage.median_filter(db, size=max(3, int(LINE_BASELINE_HZ / df) | 1), mode="nearest")
    above[freqs < 20.0] = 0.0
    peaks, props = signal.find_peaks(above, prominence=3.0)
    if not len(peaks):
        return 0.0, float("nan"), 0.0
    order = np.argsort(above[peaks])[::-1][:TOP_LINES]
    top = peaks[order]
    widths = []
    for p in top:
        lo, hi = p, p
        while lo > 0 and db[lo - 1] > db[p] - 3.0:
            lo -= 1
        while hi < len(db) - 1 and db[hi + 1] > db[p] - 3.0:
            hi += 1
        widths.append((hi - lo + 1) * df)
    return float(np.median(above[top])), float(np.median(widths)), float(np.sum(above[peaks] >= 10.0))


def frame_levels(x: np.ndarray, frame_s: float) -> np.ndarray:
    """Level in dB of consecutive frames of `frame_s` seconds."""
    n = int(frame_s * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)


def clip_stats(x: np.ndarray) -> dict[str, float]:
    """Every per-clip statistic, plus the clip's mean log-mel band levels under 'bands'."""
    prominence, width, count = line_stats(x)
    levels = frame_levels(x, 0.05)
    per_second = [np.percentile(levels[i : i + 20], 10) for i in range(0, len(levels) - 19, 20)]
    fine = frame_levels(x, 0.02)
    mel = 10 * torch.log10(_MEL(torch.from_numpy(x)) + 1e-10)
    return {
        "line_prominence_db": prominence,
        "line_width_hz": width,
        "lines_10db": count,
        "background_move_db": float(np.std(per_second)) if len(per_second) > 1 else float("nan"),
        "impulsiveness_db": float(np.percentile(fine, 99) - np.percentile(fine, 50)),
        "bands": mel.mean(1).numpy(),
    }


def group_stats(by_id: dict[str, list[dict]]) -> dict[str, float]:
    """Medians of the per-clip statistics over a type's clips, and the within/between-ID level spreads."""
    clips = [s for v in by_id.values() for s in v]
    out = {k: float(np.nanmedian([s[k] for s in clips])) for k in
           ("line_prominence_db", "line_width_hz", "lines_10db", "background_move_db", "impulsiveness_db")}
    bands = {i: np.array([s["bands"] for s in v]) for i, v in by_id.items() if len(v) >= 3}
    within = [b.std(0, ddof=1) for b in bands.values()]
    out["level_spread_db"] = float(np.median(np.mean(within, 0))) if within else float("nan")
    if len(bands) >= 2:
        between = np.array([b.mean(0) for b in bands.values()]).std(0, ddof=1)
        out["between_within"] = float(np.median(between / np.sqrt(np.mean(np.square(within), 0))))
    else:
        out["between_within"] = float("nan")
    out["clips"] = len(clips)
    out["ids"] = len(by_id)
    return out


def normal_clips(type_dir: Path, limit: int) -> dict[str, list[Path]]:
    """A type folder's normal clips by ID: train clips where there are any, else test normals."""
    found = defaultdict(list)
    for split in ("train", "test"):
        for p in sorted((type_dir / split).glob("normal_id_*.wav")):
            m = NAME.search(p.name)
            if m:
                found[m[1]].append(p)
        if found:
            break
    return {i: v[:limit] for i, v in found.items()}


def measure(type_dir: Path, limit: int) -> dict[str, float]:
    """The statistics of one machine type's normal clips."""
    return group_stats({i: [clip_stats(read(p)) for p in v] for i, v in normal_clips(type_dir, limit).items()})


def types_under(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and ((d / "train").is_dir() or (d / "test").is_dir()))


def fmt(v: float, key: str) -> str:
    if v != v:
        return "n/a"
    return f"{v:.0f}" if key == "lines_10db" else f"{v:.2f}" if key == "between_within" else f"{v:.1f}"


# DCASE 2020 development set, the baseline AE's AUC per type (its README; design.md section 6)
PUBLISHED_AE = {"fan": 0.652, "pump": 0.726, "slider": 0.850, "valve": 0.665}


def reference_table(specs: list[str]) -> list[str]:
    """Markdown: each reference run's AUC / pAUC per type, under the published AE figures."""
    if not specs:
        return []
    runs = []
    for spec in specs:
        label, _, path = spec.partition("=")
        per_type = {}
        for line in Path(path).read_text().splitlines():
            p = line.split()
            if len(p) >= 5 and p[1] == "auc" and p[3] == "pauc":
                per_type[p[0]] = (float(p[2]), float(p[4]))
        runs.append((label, per_type))
    types = sorted({t for _, per in runs for t in per})
    md = ["## The fixed reference detectors on the synthetic corpus", "",
          "AUC / pAUC (FPR <= 0.1). The published row is the DCASE 2020 baseline AE on the real development set. "
          "Realism asks: AE within 0.10 of it per type; floor <= 0.65 on valve, <= 0.88 on every type, "
          "mean over types in [0.58, 0.80].", "",
          "| reference | " + " | ".join(types) + " | mean AUC |", "|---|" + "---|" * (len(types) + 1),
          "| baseline AE on real DCASE 2020 dev (published) | "
          + " | ".join(f"{PUBLISHED_AE[t]:.3f}" if t in PUBLISHED_AE else "" for t in types) + " | |"]
    for label, per in runs:
        cells = [f"{per[t][0]:.3f} / {per[t][1]:.3f}" if t in per else "" for t in types]
        mean = np.mean([v[0] for v in per.values()]) if per else float("nan")
        md.append(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f} |")
    return [*md, ""]


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", action="append", required=True, metavar="LABEL=ROOT",
                    help="a synthetic corpus to measure, e.g. new=runs/demo/data (repeatable)")
    ap.add_argument("--real-samples", type=Path, default=here.parent.parent / "shared/real-samples/dcase2020")
    ap.add_argument("--real-dev", type=Path, default=Path(os.environ["SSAD_REAL_DEV"]) if os.environ.get("SSAD_REAL_DEV") else None)
    ap.add_argument("--real", action="append", default=[], metavar="LABEL=ROOT",
                    help="another root of real recordings in the DCASE 2020 layout (repeatable)")
    ap.add_argument("--reference", action="append", default=[], metavar="LABEL=LOG",
                    help="a reference detector's output (lines 'TYPE auc A pauc P'), e.g. 'AE, seed 3=ae.log'")
    ap.add_argument("--per-id", type=int, default=30, help="normal clips per ID to measure")
    ap.add_argument("--out", type=Path, default=here / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rows = []  # (source, type, stats)
    if args.real_samples.is_dir():
        for t in types_under(args.real_samples):
            rows.append(("real: DCASE 2020 samples", t.name, measure(t, args.per_id)))
    for spec in args.real:
        label, _, root = spec.partition("=")
        for t in types_under(Path(root)):
            rows.append((f"real: {label}", t.name, measure(t, args.per_id)))
    if args.real_dev is not None and args.real_dev.is_dir():
        for s in sorted(d for d in args.real_dev.iterdir() if d.is_dir()):
            for t in types_under(s):
                rows.append((f"real: {s.name}", t.name, measure(t, args.per_id)))
    synth_types = set()
    for spec in args.synth:
        label, _, root = spec.partition("=")
        for t in types_under(Path(root)):
            rows.append((f"synthetic: {label}", t.name, measure(t, args.per_id)))
            synth_types.add(t.name)

    args.out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source", "machine_type", "clips", "ids", *STATS])
    for source, t, st in rows:
        w.writerow([source, t, st["clips"], st["ids"], *(f"{st[k]:.4g}" for k in STATS)])
    write_text_atomic(args.out / "realism.csv", buf.getvalue())

    md = [
        "# Realism: real recordings beside the synthetic corpus",
        "",
        "Made by `experiments/realism.py` (" + ", ".join(f"`--synth {s.split('=')[0]}`" for s in args.synth)
        + "). Normal clips only; each figure is the median over a type's clips (the level spreads over its IDs).",
        "The real DCASE 2020 samples are 2 normal test clips per type from 2 IDs: per-clip statistics only.",
        "",
    ]
    for key in STATS:
        md += [f"## {STAT_TITLES[key]}", "", "| machine type | " + " | ".join(sorted({r[0] for r in rows})) + " |"]
        sources = sorted({r[0] for r in rows})
        md.append("|---|" + "---|" * len(sources))
        table = {(r[0], r[1]): r[2] for r in rows}
        for t in sorted({r[1] for r in rows}, key=lambda n: (n not in synth_types, n.lower())):
            md.append(f"| {t} | " + " | ".join(fmt(table[(s, t)][key], key) if (s, t) in table else "" for s in sources) + " |")
        md.append("")
    md += reference_table(args.reference)
    write_text_atomic(args.out / "realism.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
