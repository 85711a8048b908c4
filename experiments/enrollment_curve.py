"""Enrolment curve: how a machine the network never saw is detected as it is enrolled with more normal clips.

    ssad fit --config configs/demo.yaml --data.root ROOT --trainer.default_root_dir RUN \\
        --data.init_args.exclude_ids '[fan/id_00, pump/id_02, slider/id_04, valve/id_06]'
    python experiments/enrollment_curve.py --run RUN --data ROOT [--seed 1] [--draws 3]

ROOT is `ssad synth --preset default --seed SEED` (read only). The detector is fitted on the trained IDs'
training clips; each held-out ID is then enrolled (`ssad.enrollment.refit_machine`, as `ssad enroll` does)
with n = 5, 10, 20, 50, 100 normal clips and scored on its test clips. The set has 30 training clips per
ID, so the enrolment pool is that ID's training clips 0..129 synthesized by `synthesize_clip` with the set's
seed (clips 0..29 are the set's own training clips, before their 16-bit rounding; test clips are never used). Each n is
drawn `--draws` times from the pool; the curve shows the mean over draws of the mean AUC over the held-out
IDs, with the standard deviation over draws. Writes enrollment_curve.{csv,md,png} into experiments/results/.
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
HELD_OUT = ("fan/id_00", "pump/id_02", "slider/id_04", "valve/id_06")
SCORERS = ("gaussian", "knn")


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
    from ssad.data.layout import index_root, select
    from ssad.detector import Detector, clip_key, clip_outputs
    from ssad.enrollment import refit_machine
    from ssad.inference import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run trained without the held-out IDs")
    parser.add_argument("--data", required=True, help="the synthetic default set the run was trained on")
    parser.add_argument("--seed", type=int, default=1, help="the seed the set was made with")
    parser.add_argument("--draws", type=int, default=3, help="random enrolment subsets per size")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    model = load(args.run)
    clips = index_root(args.data)
    train = [c for c in select(clips, split="train", label="normal") if clip_key(c) not in HELD_OUT]
    outputs, _ = clip_outputs(model, [c.path for c in train], progress=True)
    detector = Detector.from_outputs(model, outputs, [clip_key(c) for c in train], scorers=list(SCORERS))

    test = select(clips, split="test")
    test_outputs, _ = clip_outputs(model, [c.path for c in test], progress=True)
    test_ids = np.array([clip_key(c) for c in test])
    labels = np.array([c.label == "anomaly" for c in test])

    def auc(det: Detector, scorer: str, machine: str) -> float:
        rows = test_ids == machine
        part = {k: v[rows] for k, v in test_outputs.items()}
        scores = det.scorers[scorer].score(part[det.scorers[scorer].input_name], [machine] * int(rows.sum()))
        return float(roc_auc_score(labels[rows], scores))

    trained = {s: float(np.mean([auc(detector, s, m) for m in detector.machine_ids])) for s in SCORERS}
    pools = {m: pool_outputs(model, m, args.seed) for m in HELD_OUT}
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        for draw in range(args.draws):
            per_scorer = {s: [] for s in SCORERS}
            for machine in HELD_OUT:
                pick = rng.choice(POOL, size=n, replace=False)
                enrolled, _ = refit_machine(detector, machine, {k: v[pick] for k, v in pools[machine].items()})
                for s in SCORERS:
                    per_scorer[s].append(auc(enrolled, s, machine))
            for s in SCORERS:
                rows.append({"clips": n, "draw": draw, "scorer": s, "auc": float(np.mean(per_scorer[s])),
                             **{f"auc_{m}": a for m, a in zip(HELD_OUT, per_scorer[s], strict=True)}})
    write(Path(args.out), rows, trained)


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
    lines = ["# Enrolment curve (held-out IDs " + ", ".join(HELD_OUT) + ")", "",
             "Mean AUC (%) over the held-out IDs, mean ± sd over random enrolment draws; "
             "trained IDs: the other 12 IDs, fitted on their 30 training clips.", "",
             "| clips | " + " | ".join(SCORERS) + " |", "|---|" + "---|" * len(SCORERS)]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for s in SCORERS:
        stats = [(n, np.mean(v), np.std(v)) for n in SIZES
                 for v in [[r["auc"] for r in rows if r["clips"] == n and r["scorer"] == s]]]
        ax.errorbar([n for n, _, _ in stats], [100 * m for _, m, _ in stats], yerr=[100 * d for _, _, d in stats],
                    marker="o", capsize=3, label=f"{s}, enrolled IDs")
        ax.axhline(100 * trained[s], linestyle="--", linewidth=1, color=ax.lines[-1].get_color(),
                   label=f"{s}, trained IDs (30 clips)")
    for n in SIZES:
        cells = []
        for s in SCORERS:
            values = [r["auc"] for r in rows if r["clips"] == n and r["scorer"] == s]
            cells.append(f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| trained IDs | " + " | ".join(f"{100 * trained[s]:.1f}" for s in SCORERS) + " |")
    ax.set_xscale("log")
    ax.set_xticks(SIZES, [str(n) for n in SIZES])
    ax.set_xlabel("normal enrolment clips")
    ax.set_ylabel("AUC (%)")
    ax.set_title("A machine the network never saw, enrolled without retraining")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "enrollment_curve.png", dpi=120)
    (out / "enrollment_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
