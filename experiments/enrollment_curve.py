"""Enrolment curve: how a machine the network never saw is detected as it is enrolled with more normal clips.

    ssad fit --config configs/demo.yaml --data.root ROOT --trainer.default_root_dir RUN1 \\
        --data.init_args.exclude_ids '[fan/id_00, pump/id_02, slider/id_04, valve/id_06]'
    ssad fit ... --trainer.default_root_dir RUN2 --data.init_args.exclude_ids '[fan/id_02, pump/id_04, slider/id_06, valve/id_00]'
    python experiments/enrollment_curve.py --data ROOT --runs RUN1 RUN2 [--seed 1] [--draws 5]

ROOT is `ssad synth --preset default --seed SEED` (read only). The detector is fitted on the trained IDs'
training clips; each held-out ID (run k holds out `HELD_OUT[k]`) is then enrolled
(`ssad.detector.enrollment.refit_machine`, as `ssad enroll` does) with n = 5, 10, 20, 50, 100 normal clips and
scored on its test clips. The set has 30 training clips per ID, so the enrolment pool is that ID's
training clips 0..129 synthesized by `synthesize_clip` with the set's seed (clips 0..29 are the set's own
training clips, before their 16-bit rounding; test clips are never used). Each n is drawn `--draws` times
from the pool; the curve shows the mean over runs and draws of the mean AUC over a run's held-out IDs,
with the standard deviation over runs and draws. "gaussian, own clips only" is the Gaussian fitted on the
enrolment clips alone (Ledoit-Wolf shrinkage, as for trained IDs) instead of drawn towards the covariance
the trained machines share, which is what `ssad enroll` does. Writes enrollment_curve.{csv,md,png} into
experiments/results/.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (5, 10, 20, 50, 100)
POOL = 130
HELD_OUT = (("fan/id_00", "pump/id_02", "slider/id_04", "valve/id_06"),
            ("fan/id_02", "pump/id_04", "slider/id_06", "valve/id_00"))
SCORERS = ("gaussian", "knn")
OWN_ONLY = "gaussian, own clips only"
CURVES = (*SCORERS, OWN_ONLY)


def pool_outputs(model, machine: str, seed: int) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Model outputs of `POOL` normal training clips of a held-out machine, synthesized as the set has them."""
    from ssad.synthesis import SynthConfig, synthesize_clip

    machine_type, machine_id = machine.split("/")
    number = int(machine_id.removeprefix("id_"))
    parts: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, POOL, 10), desc=f"enrolment pool {machine}", unit="10 clips"):
        waves = [synthesize_clip(machine_type, number, "normal", seed=seed, split="train", index=i,
                                 config=SynthConfig()) for i in range(start, min(start + 10, POOL))]
        for name, value in model.outputs(waves, sample_rate=SynthConfig().sample_rate).items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def main() -> None:
    """Fit, enrol, score, write the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="runs trained without HELD_OUT[0], HELD_OUT[1], ...")
    parser.add_argument("--data", required=True, help="the synthetic default set the runs were trained on")
    parser.add_argument("--seed", type=int, default=1, help="the seed the set was made with")
    parser.add_argument("--draws", type=int, default=5, help="random enrolment subsets per size")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if len(args.runs) > len(HELD_OUT):
        parser.error(f"at most {len(HELD_OUT)} runs (one per held-out set)")
    rows, trained = [], {c: [] for c in SCORERS}
    for k, run in enumerate(args.runs):
        run_rows, run_trained = curve(run, args.data, HELD_OUT[k], args.seed, args.draws, k)
        rows += run_rows
        for c in SCORERS:
            trained[c].append(run_trained[c])
    write(Path(args.out), rows, {c: float(np.mean(v)) for c, v in trained.items()})


def curve(run: str, data: str, held_out: tuple[str, ...], seed: int, draws: int, k: int) -> tuple[list[dict], dict]:
    """One run: rows (clips, draw, curve, mean AUC over the held-out IDs) and the trained IDs' mean AUC."""
    from ssad.audio.clips import clip_key
    from ssad.audio.layout import index_root, select
    from ssad.detector import Detector
    from ssad.detector.enrollment import refit_machine
    from ssad.encoder import clip_outputs, load
    from ssad.scoring import GaussianScorer

    model = load(run)
    clips = index_root(data)
    train = [c for c in select(clips, split="train", label="normal") if clip_key(c) not in held_out]
    outputs = clip_outputs(model, [c.path for c in train], progress=True)
    detector = Detector.from_outputs(model, outputs, [clip_key(c) for c in train], scorers=list(SCORERS))

    test = select(clips, split="test")
    test_outputs = clip_outputs(model, [c.path for c in test], progress=True)
    test_ids = np.array([clip_key(c) for c in test])
    labels = np.array([c.label == "anomaly" for c in test])

    def auc(scorer, machine: str) -> float:  # noqa: ANN001
        rows = test_ids == machine
        scores = scorer.score(test_outputs[scorer.input_name][rows], [machine] * int(rows.sum()))
        return float(roc_auc_score(labels[rows], scores))

    trained = {s: float(np.mean([auc(detector.scorers[s], m) for m in detector.machine_ids])) for s in SCORERS}
    pools = {m: pool_outputs(model, m, seed) for m in held_out}
    rng = np.random.default_rng(k)
    rows = []
    for n in SIZES:
        for draw in range(draws):
            aucs: dict[str, list[float]] = {c: [] for c in CURVES}
            for machine in held_out:
                pick = rng.choice(POOL, size=n, replace=False)
                enrolment = {name: value[pick] for name, value in pools[machine].items()}
                enrolled, _ = refit_machine(detector, machine, enrolment)
                for s in SCORERS:
                    aucs[s].append(auc(enrolled.scorers[s], machine))
                aucs[OWN_ONLY].append(auc(GaussianScorer().fit(enrolment["embedding"], [machine] * n), machine))
            for c in CURVES:
                rows.append({"run": k, "held_out": " ".join(held_out), "clips": n, "draw": draw, "curve": c,
                             "auc": float(np.mean(aucs[c])),
                             **{f"auc_{m.split('/')[0]}": a for m, a in zip(held_out, aucs[c], strict=True)}})
    return rows, trained


def write(out: Path, rows: list[dict], trained: dict[str, float]) -> None:
    """The CSV of every draw, a Markdown table of mean ± sd, and the PNG curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "enrollment_curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    runs = sorted({r["run"] for r in rows})
    held = "; ".join(", ".join(HELD_OUT[k]) for k in runs)
    lines = [f"# Enrolment curve (held out of training: {held})", "",
             "Mean AUC (%) over a run's held-out IDs, mean ± sd over runs and random enrolment draws; "
             "trained IDs: the other 12 IDs of each run, fitted on their 30 training clips. "
             "Made by `experiments/enrollment_curve.py`.", "",
             "| clips | " + " | ".join(CURVES) + " |", "|---|" + "---|" * len(CURVES)]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for c in CURVES:
        stats = [(n, np.mean(v), np.std(v)) for n in SIZES
                 for v in [[r["auc"] for r in rows if r["clips"] == n and r["curve"] == c]]]
        bars = ax.errorbar([n for n, _, _ in stats], [100 * m for _, m, _ in stats],
                           yerr=[100 * d for _, _, d in stats], marker="o", capsize=3,
                           linestyle=":" if c == OWN_ONLY else "-", label=f"{c}, enrolled IDs")
        if c in trained:
            ax.axhline(100 * trained[c], linestyle="--", linewidth=1, color=bars.lines[0].get_color(),
                       label=f"{c}, trained IDs (30 clips)")
    for n in SIZES:
        cells = []
        for c in CURVES:
            values = [r["auc"] for r in rows if r["clips"] == n and r["curve"] == c]
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| trained IDs | " + " | ".join(f"{100 * trained[c]:.1f}" if c in trained else "" for c in CURVES) + " |")
    ax.set_xscale("log")
    ax.set_xticks(SIZES, [str(n) for n in SIZES])
    ax.set_xlabel("normal enrolment clips")
    ax.set_ylabel("AUC (%)")
    ax.set_title("New machines enrolled without retraining", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "enrollment_curve.png", dpi=120)
    (out / "enrollment_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
