"""Train and evaluate every ssad detector on one data root; write compare.csv and a ranked Markdown table.

Detectors: the machine-ID classifier with its Gaussian, kNN and softmax scorers (one model over all
types), Group MADE and the DCASE 2020 baseline autoencoder (one model per machine type, as the
baseline), and an ensemble of all of them (per-ID standardised on training clips, equal weights).

    python experiments/compare.py [--data ROOT] [--profile auto|tiny|demo] [--out experiments/results]

Without --data it uses the embedded default synthetic set (generated under runs/compare/data).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent

# Per profile: config and command-line overrides per detector family.
PROFILES = {
    "tiny": {
        "classifier": ("tiny.yaml", []),
        "group_made": ("tiny_made.yaml", []),
        "baseline_ae": ("tiny_ae.yaml", []),
    },
    "demo": {
        "classifier": ("demo.yaml", []),
        # fewer epochs than the full configs, and MADE on a subsample of windows with a sparser inference hop,
        # so that the whole comparison fits in a coffee break on 2 CPU cores
        "group_made": ("made.yaml", ["--trainer.max_epochs", "4", "--data.max_windows_per_clip", "128",
                                     "--model.inference_hop", "4"]),
        "baseline_ae": ("ae.yaml", ["--trainer.max_epochs", "20"]),
    },
}
PER_TYPE = ("group_made", "baseline_ae")


def _fit(config: str, root: Path, run: Path, extra: list[str], machine_type: str | None = None,
         reuse: bool = False) -> None:
    from ssad.cli.fit import run_lightning_cli

    if reuse and (run / "checkpoints" / "last.ckpt").is_file() and (run / ".complete").is_file():
        return
    shutil.rmtree(run, ignore_errors=True)
    args = ["fit", "--config", str(PROJECT / "configs" / config), "--data.root", str(root),
            "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false", *extra]
    if machine_type:
        args += ["--data.machine_types", f"[{machine_type}]"]
    run_lightning_cli(args)
    (run / ".complete").touch()


def synthetic_root(root: Path, seed: int) -> Path:
    """The synthetic default preset at `seed` under `root`, generated once (a `.done` marker says it is whole)."""
    from ssad.synthesis import generate

    if not (root / ".done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate(root, preset="default", seed=seed)
        (root / ".done").touch()
    return root


def _clip_seconds(root: Path) -> float:
    import soundfile as sf

    first = next(root.rglob("*.wav"))
    return sf.info(first).duration


def _type_means(results_csv: Path, rename: dict[str, str]) -> list[dict]:
    rows = []
    with results_csv.open() as f:
        for row in csv.DictReader(f):
            if row["machine_id"] == "mean" and row["scorer"] in rename:
                rows.append({"detector": rename[row["scorer"]], "machine_type": row["machine_type"],
                             "auc": float(row["auc"]), "pauc": float(row["pauc"])})
    return rows


def rank_table(rows: list[dict]) -> tuple[list[str], list[str], dict, dict]:
    """Detectors, types, (detector, type) -> (auc, pauc), detector -> mean challenge rank (AUC and pAUC ranks)."""
    detectors = sorted({r["detector"] for r in rows})
    types = sorted({r["machine_type"] for r in rows})
    cell = {(r["detector"], r["machine_type"]): (r["auc"], r["pauc"]) for r in rows}
    ranks: dict[str, list[float]] = {d: [] for d in detectors}
    from scipy.stats import rankdata

    for t in types:
        present = [d for d in detectors if (d, t) in cell]
        for k in (0, 1):
            values = np.array([-cell[(d, t)][k] for d in present])
            for d, r in zip(present, rankdata(values), strict=True):
                ranks[d].append(float(r))
    return detectors, types, cell, {d: float(np.mean(v)) if v else float("nan") for d, v in ranks.items()}


def markdown(rows: list[dict], seconds: float, root: Path) -> str:
    detectors, types, cell, rank = rank_table(rows)
    head = "| detector | " + " | ".join(f"{t} AUC | {t} pAUC" for t in types) + " | mean AUC | mean pAUC | rank |"
    lines = [f"# Detector comparison on `{os.path.relpath(root)}`", "",
             "AUC / pAUC (FPR ≤ 0.1) in %, mean over each type's machine IDs; rank = mean of the per-type "
             "ranks on AUC and on pAUC (the DCASE challenge's ranking; lower is better).", "", head,
             "|" + "---|" * (3 + 2 * len(types) + 1)]
    for d in sorted(detectors, key=lambda d: rank[d]):
        values = [cell.get((d, t)) for t in types]
        cols = " | ".join(f"{100 * v[0]:.2f} | {100 * v[1]:.2f}" if v else "– | –" for v in values)
        aucs = [v[0] for v in values if v]
        paucs = [v[1] for v in values if v]
        lines.append(f"| {d} | {cols} | {100 * np.mean(aucs):.2f} | {100 * np.mean(paucs):.2f} | {rank[d]:.2f} |")
    lines += ["", f"Wall time: {seconds:.0f} s (training and evaluating every detector)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the embedded synthetic set)")
    parser.add_argument("--profile", choices=["auto", *PROFILES], default="auto",
                        help="model sizes: tiny for clips of a few seconds, demo otherwise (auto decides)")
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "compare", help="runs and evaluations")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where compare.csv/.md go")
    parser.add_argument("--reuse", action="store_true", help="keep runs that finished in an earlier comparison")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")

    from ssad.audio.layout import index_root
    from ssad.evaluation.report import write_evaluation
    from ssad.evaluation.run import evaluate_run
    from ssad.evaluation.table import ScoreTable, ensemble_tables

    start = time.time()
    root = args.data or synthetic_root(args.work / "data", seed=1)
    profile = args.profile if args.profile != "auto" else ("tiny" if _clip_seconds(root) < 5 else "demo")
    plan = PROFILES[profile]
    types = sorted({c.machine_type for c in index_root(root)})
    work = args.work
    rows: list[dict] = []
    score_tables: list[ScoreTable] = []

    classifier_run, classifier_eval = work / "classifier", work / "eval" / "classifier"
    _fit(plan["classifier"][0], root, classifier_run, plan["classifier"][1], reuse=args.reuse)
    evaluate_run(classifier_run, root, classifier_eval, device="auto", progress=False)
    rename = {"gaussian": "classifier+gaussian", "knn": "classifier+knn", "softmax": "classifier+softmax"}
    rows += _type_means(classifier_eval / "results.csv", rename)
    table = ScoreTable.from_csv(classifier_eval / "scores.csv")
    table.scorer = np.array([rename.get(s, s) for s in table.scorer])
    score_tables.append(table)

    for family in PER_TYPE:
        config, extra = plan[family]
        for machine_type in types:
            run, out = work / family / machine_type, work / "eval" / family / machine_type
            _fit(config, root, run, extra, machine_type, reuse=args.reuse)
            evaluate_run(run, root, out, device="auto", progress=False, machine_types=[machine_type], plots=False)
            rows += _type_means(out / "results.csv", {family: family})
            score_tables.append(ScoreTable.from_csv(out / "scores.csv"))

    everything = ScoreTable.concat(score_tables)
    members = sorted(set(everything.scorers))
    train, test = everything.filter(split="train"), everything.filter(split="test")
    ensemble_train, ensemble_test = ensemble_tables(train, test, members, name="ensemble")
    ensemble_dir = work / "eval" / "ensemble"
    write_evaluation(ensemble_train, ensemble_test, ensemble_dir, plots=False)
    rows += _type_means(ensemble_dir / "results.csv", {"ensemble": "ensemble"})

    seconds = time.time() - start
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["detector", "machine_type", "auc", "pauc"])
        writer.writeheader()
        writer.writerows({**r, "auc": f"{r['auc']:.4f}", "pauc": f"{r['pauc']:.4f}"} for r in rows)
    text = markdown(rows, seconds, root)
    (args.out / "compare.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
