"""Which detector, how good, how sure: train and evaluate every detector on several roots and seeds.

    python experiments/quality.py                       # synthetic default, seeds 1-3 (+ $SSAD_REAL_DEV sets)
    python experiments/quality.py --data ROOT           # one real root (DCASE layout); prints reference figures
    python experiments/quality.py --variant adacos "--model.head adacos" --detectors classifier

Writes quality.csv (`dataset,seed,detector,machine_type,auc,pauc`) and quality.md (mean and spread over
seeds, the spectral floor beside every row) into --out. Detectors are named `family:scorer`; the floor is
`spectral_stats:gaussian`. Every run and evaluation stays under --work, so --reuse picks up where an
interrupted benchmark stopped. Variants (`--variant NAME ARGS`) train the classifier with extra `ssad fit`
arguments and appear as `classifier[NAME]:scorer`: the ablation table is made of them.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

from compare import PER_TYPE, PROFILES, _fit, synthetic_root  # noqa: E402

FLOOR = "spectral_stats:gaussian"
#: The ensemble's members, chosen on synthetic seed 1 and lathe_vmc (the development data).
ENSEMBLE = [FLOOR, "classifier:gaussian"]
REAL_SETS = ("lathe_vmc", "mimii_mini", "fault3")
FIELDS = ["dataset", "seed", "detector", "machine_type", "auc", "pauc", "false_alarms", "recall"]
REFERENCE = HERE / "reference" / "dcase2020_dev.csv"
REFERENCE_TYPES = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")


def _results(eval_dir: Path, family: str) -> list[dict]:
    """Per-type mean rows of an `ssad evaluate` folder, detectors named `family:scorer` (the scorer alone without a family)."""
    rows = []
    with (eval_dir / "results.csv").open() as f:
        for row in csv.DictReader(f):
            if row["machine_id"] == "mean":
                name = f"{family}:{row['scorer']}" if family else row["scorer"]
                rows.append({"detector": name, "machine_type": row["machine_type"],
                             "auc": float(row["auc"]), "pauc": float(row["pauc"]),
                             "false_alarms": float(row.get("false_alarms") or "nan"),
                             "recall": float(row.get("recall") or "nan")})
    return rows


def _scores(eval_dir: Path, family: str):
    """The evaluation's scores table with scorers renamed `family:scorer`."""
    from ssad.evaluation.table import ScoreTable

    table = ScoreTable.from_csv(eval_dir / "scores.csv")
    table.scorer = np.array([f"{family}:{s}" for s in table.scorer])
    return table


def _evaluate(run: Path, root: Path, out: Path, reuse: bool, types: list[str] | None = None) -> None:
    from ssad.evaluation.run import evaluate_run

    if reuse and (out / "results.csv").is_file() and (out / ".complete").is_file():
        return
    shutil.rmtree(out, ignore_errors=True)
    evaluate_run(run, root, out, device="auto", progress=False, plots=False, machine_types=types)
    (out / ".complete").touch()


def run_dataset(name: str, root: Path, seed: int, work: Path, detectors: list[str],
                variants: dict[str, list[str]], reuse: bool, ensemble: list[str] = ENSEMBLE,
                profile: str = "demo") -> list[dict]:
    """Train and evaluate the chosen detectors on one root with one seed; rows for quality.csv.

    Two ensembles (per-ID z-scores on training clips, equal weights): `ensemble` of the members chosen on
    the development data (`ENSEMBLE`; no labels at run time), and `ensemble_all` of every scorer.
    """
    from ssad.audio.layout import index_root
    from ssad.evaluation.report import write_evaluation
    from ssad.evaluation.table import ScoreTable, ensemble_tables

    plan = PROFILES[profile]
    base = work / name / f"seed{seed}"
    seed_args = ["--seed_everything", str(seed)]
    rows, tables = [], []

    def add(family: str, eval_dir: Path) -> None:
        rows.extend(_results(eval_dir, family))
        tables.append(_scores(eval_dir, family))

    if "spectral_stats" in detectors:
        run = base / "spectral_stats"
        _fit("spectral_stats.yaml", root, run, [], reuse=reuse)
        _evaluate(run, root, base / "eval" / "spectral_stats", reuse)
        add("spectral_stats", base / "eval" / "spectral_stats")
    if "classifier" in detectors:
        for variant, extra in {"": [], **variants}.items():
            family = f"classifier[{variant}]" if variant else "classifier"
            run = base / family
            _fit(plan["classifier"][0], root, run, [*seed_args, "--data.seed", str(seed), *extra], reuse=reuse)
            _evaluate(run, root, base / "eval" / family, reuse)
            add(family, base / "eval" / family)
    types = sorted({c.machine_type for c in index_root(root)})
    for family in PER_TYPE:
        if family not in detectors:
            continue
        config, extra = plan[family]
        parts = []
        for machine_type in types:
            run, out = base / family / machine_type, base / "eval" / family / machine_type
            _fit(config, root, run, [*seed_args, *extra], machine_type, reuse=reuse)
            _evaluate(run, root, out, reuse, types=[machine_type])
            rows.extend(_results(out, family))
            parts.append(_scores(out, family))
        tables.append(ScoreTable.concat(parts))
    if len(tables) > 1:
        everything = ScoreTable.concat(tables)
        train, test = everything.filter(split="train"), everything.filter(split="test")
        present = set(everything.scorers)
        for label, members in (("ensemble", [m for m in ensemble if m in present]), ("ensemble_all", sorted(present))):
            if len(members) < 2:
                continue
            ens_train, ens_test = ensemble_tables(train, test, members, name=label)
            out = base / "eval" / label
            write_evaluation(ens_train, ens_test, out, plots=False)
            rows.extend(_results(out, ""))
    return [{"dataset": name, "seed": seed, **r} for r in rows]


def _datasets(args: argparse.Namespace, work: Path) -> list[tuple[str, Path, list[int]]]:
    """(name, root, seeds) to run: --data, else the synthetic default at each seed plus the real sets."""
    if args.data:
        return [(args.data.name, args.data, args.seeds)]
    out = []
    for seed in [] if args.real_only else args.seeds:
        out.append(("synthetic", synthetic_root(work / "data" / f"synth-s{seed}", seed), [seed]))
    real = os.environ.get("SSAD_REAL_DEV")
    if real and not args.synthetic_only:
        for name in REAL_SETS:
            if (Path(real) / name).is_dir():
                out.append((name, Path(real) / name, args.real_seeds))
    return out


def read_rows(path: Path) -> list[dict]:
    """The rows of a quality CSV, with seed, AUC and pAUC as numbers."""
    with path.open() as f:
        return [{**r, "auc": float(r["auc"]), "pauc": float(r["pauc"]), "seed": int(r["seed"]),
                 "false_alarms": float(r.get("false_alarms") or "nan"), "recall": float(r.get("recall") or "nan")}
                for r in csv.DictReader(f)]


def _merge(path: Path, new: list[dict]) -> list[dict]:
    """quality.csv rows: those already in `path` for other (dataset, seed, detector), then the new ones."""
    keys = {(r["dataset"], str(r["seed"]), r["detector"]) for r in new}
    old = [r for r in read_rows(path) if (r["dataset"], str(r["seed"]), r["detector"]) not in keys] if path.is_file() else []
    rows = old + new
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**r, "auc": f"{r['auc']:.4f}", "pauc": f"{r['pauc']:.4f}",
                          "false_alarms": f"{r.get('false_alarms', float('nan')):.4f}",
                          "recall": f"{r.get('recall', float('nan')):.4f}"} for r in rows)
    tmp.replace(path)
    return rows


def summary(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(dataset, detector) -> per-seed mean AUC/pAUC over machine types, and their mean and spread."""
    per: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    decisions: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        per[(r["dataset"], r["detector"])][int(r["seed"])].append((r["auc"], r["pauc"]))
        decisions[(r["dataset"], r["detector"])].append((r.get("false_alarms", np.nan), r.get("recall", np.nan)))
    out = {}
    for key, seeds in per.items():
        by_seed = {s: (float(np.mean([a for a, _ in v])), float(np.mean([p for _, p in v]))) for s, v in seeds.items()}
        aucs = np.array([a for a, _ in by_seed.values()])
        paucs = np.array([p for _, p in by_seed.values()])
        out[key] = {"seeds": by_seed, "auc": aucs.mean(), "auc_sd": aucs.std(ddof=1) if len(aucs) > 1 else 0.0,
                    "pauc": paucs.mean(), "pauc_sd": paucs.std(ddof=1) if len(paucs) > 1 else 0.0,
                    "false_alarms": float(np.mean([f for f, _ in decisions[key]])),
                    "recall": float(np.mean([r for _, r in decisions[key]]))}
    return out


def markdown(rows: list[dict], seconds: float | None = None) -> str:
    """quality.md: per data set, detectors by mean AUC, with each seed, the spread and the floor's lead."""
    table = summary(rows)
    lines = ["# Detector quality", "",
             "Mean AUC / pAUC (FPR ≤ 0.1, McClish) over machine types, in %; `±` is the standard deviation over "
             f"seeds; Δ floor is the difference in mean AUC to the spectral floor (`{FLOOR}`) on the same seeds. "
             "False alarms / recall: the share of normal / anomalous test clips above the threshold (aiming at 0.05 "
             "false alarms), mean over machine types and seeds. Made by `make quality` (`experiments/quality.py`).", ""]
    for dataset in sorted({d for d, _ in table}, key=lambda d: (d != "synthetic", d)):
        entries = {det: v for (d, det), v in table.items() if d == dataset}
        seeds = sorted({s for v in entries.values() for s in v["seeds"]})
        floor = entries.get(FLOOR)
        lines += [f"## {dataset}", "",
                  "| detector | " + " | ".join(f"seed {s} AUC / pAUC" for s in seeds)
                  + " | mean AUC | mean pAUC | Δ floor | false alarms / recall |", "|" + "---|" * (len(seeds) + 5)]
        for det, v in sorted(entries.items(), key=lambda kv: -kv[1]["auc"]):
            cols = " | ".join(f"{100 * v['seeds'][s][0]:.1f} / {100 * v['seeds'][s][1]:.1f}" if s in v["seeds"]
                              else "–" for s in seeds)
            delta = "" if floor is None else f"{100 * (v['auc'] - floor['auc']):+.1f}"
            decided = "–" if np.isnan(v["false_alarms"]) else f"{v['false_alarms']:.3f} / {v['recall']:.2f}"
            lines.append(f"| {det} | {cols} | {100 * v['auc']:.1f} ± {100 * v['auc_sd']:.1f} | "
                         f"{100 * v['pauc']:.1f} ± {100 * v['pauc_sd']:.1f} | {delta} | {decided} |")
        lines.append("")
    if seconds is not None:
        lines.append(f"Wall time of the last run: {seconds / 60:.0f} min.")
    return "\n".join(lines) + "\n"


def reference_table(rows: list[dict], dataset: str) -> str:
    """Our per-type AUC/pAUC beside the published DCASE 2020 development figures (design.md §6)."""
    with REFERENCE.open() as f:
        refs = list(csv.DictReader(f))
    types = [t for t in REFERENCE_TYPES if any(r["machine_type"] == t for r in rows)]
    ours = defaultdict(dict)
    for r in rows:
        if r["dataset"] == dataset:
            ours[r["detector"]].setdefault(r["machine_type"], []).append((r["auc"], r["pauc"]))
    lines = ["| system | " + " | ".join(types) + " | source |", "|" + "---|" * (len(types) + 2)]
    for ref in refs:
        cells = [f"{float(ref[t + '_auc']):.2f} / {float(ref[t + '_pauc']):.2f}" if ref.get(t + "_auc") else "–"
                 for t in types]
        lines.append(f"| {ref['system']} | " + " | ".join(cells) + f" | {ref['source']} |")
    for det, per_type in sorted(ours.items()):
        cells = [f"{100 * np.mean([a for a, _ in per_type[t]]):.2f} / {100 * np.mean([p for _, p in per_type[t]]):.2f}"
                 if t in per_type else "–" for t in types]
        lines.append(f"| ssad {det} | " + " | ".join(cells) + " | this run |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="one data root instead of the default sets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="synthetic seeds (data and training)")
    parser.add_argument("--real-seeds", type=int, nargs="+", default=[1], help="training seeds on the real sets")
    parser.add_argument("--synthetic-only", action="store_true", help="skip the $SSAD_REAL_DEV sets")
    parser.add_argument("--real-only", action="store_true", help="only the $SSAD_REAL_DEV sets")
    parser.add_argument("--detectors", nargs="+", default=["spectral_stats", "classifier", *PER_TYPE],
                        choices=["spectral_stats", "classifier", *PER_TYPE])
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "ARGS"),
                        help="also train the classifier with these extra `ssad fit` arguments, named NAME")
    parser.add_argument("--profile", choices=list(PROFILES), default="demo",
                        help="model sizes: demo (configs/demo.yaml, what a user starts from) or tiny (quick checks)")
    parser.add_argument("--ensemble", nargs="+", default=ENSEMBLE, help="members of the `ensemble` rows")
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "quality", help="runs and evaluations")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where quality.csv/.md go")
    parser.add_argument("--name", default="quality", help="file stem of the outputs")
    parser.add_argument("--reuse", action="store_true", help="keep runs and evaluations that finished earlier")
    parser.add_argument("--collect", type=Path, nargs="+", default=[],
                        help="run nothing: merge these quality CSVs (e.g. from runs split over machines) into the outputs")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    start = time.time()
    variants = {name: shlex.split(extra) for name, extra in args.variant}
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{args.name}.csv"
    rows: list[dict] = []
    for path in args.collect:
        rows = _merge(csv_path, read_rows(path))
    for name, root, seeds in [] if args.collect else _datasets(args, args.work):
        for seed in seeds:
            new = run_dataset(name, root, seed, args.work, args.detectors, variants, args.reuse, args.ensemble,
                              args.profile)
            rows = _merge(csv_path, new)  # written after every (data set, seed): an interruption loses one
            print(f"{name} seed {seed}: done ({(time.time() - start) / 60:.1f} min)", flush=True)
    text = markdown(rows, None if args.collect else time.time() - start)
    if args.data and any(r["machine_type"] in REFERENCE_TYPES for r in rows):
        text += f"\n## Published figures beside ours ({args.data.name})\n\n" + reference_table(rows, args.data.name)
    tmp = args.out / f"{args.name}.md.tmp"
    tmp.write_text(text)
    tmp.replace(args.out / f"{args.name}.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
