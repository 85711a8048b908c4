"""Cold start: machines the encoder never heard, enrolled from a few normal clips with nothing retrained.

    python experiments/cold_start.py [--encoder pretrained|RUN|DETECTOR] [--synthetic-seeds 2 3]
        [--synthetic-dir DIR] [--real-dev ROOT] [--data ROOT ...] [--trained-work DIR] [--real-seeds 1 2 3]

For each set (the $SSAD_REAL_DEV development sets, held-out units of the realistic synthetic default at
`--synthetic-seeds`, any `--data` root) every machine is enrolled into an empty detector of the encoder, in
turn, as `ssad enroll` does it (the first on its clips alone, each later one with its Gaussian's covariance
drawn towards the machines enrolled before it; `ssad.detector.enrollment.refit_machine`), from 5, 10, 20 and
all of its normal training clips (the subsets drawn `--draws` times, seeded), and its test clips are scored:
AUC and pAUC (FPR <= 0.1) per ID with `ssad.evaluation.metrics`, the mean over IDs per type. "alone" rows
enrol each machine into an empty detector of its own. Beside it: ssad trained on that set
(`experiments/quality.py`'s runs, reused from `--trained-work` or trained there with configs/demo.yaml), the
floor (`spectral_stats:gaussian` as quality.py computes it; and `sanity_synth.py`, the checks' fixed floor),
and the baseline AE (the checks' `reference_ae.py`, from its cached logs or with `--run-reference-ae`).
Time to a usable detector and peak memory are measured in a fresh process each. The issue's targets are
judged from these figures. Writes cold_start.csv and cold_start.md into --out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

from compare import synthetic_root  # noqa: E402
from quality import FLOOR, REAL_SETS, run_dataset  # noqa: E402

SIZES = (5, 10, 20)
ALL = "all"
#: the scorers of `ssad detector --pretrained` (`PRETRAINED_SCORERS`, checked in `main`; not imported here, so that
#: a timing process pays for importing ssad); the first is its default, and the one the targets are judged on
SCORERS = ("ensemble", "gaussian", "knn", "floor")
HEADLINE = SCORERS[0]
#: what ssad trained on the set is compared by: its detector's default scorer
TRAINED_SCORER = "gaussian"
IN_TURN, ALONE = "in turn", "alone"
#: what the report quotes of the shipped encoder's provenance.json
PROVENANCE_SHOWN = ("commit", "published", "source", "epochs", "steps")
ACCEPTANCE = PROJECT.parent / "shared" / "acceptance"
FIELDS = ["set", "data_seed", "detector", "scorer", "enrolment", "clips", "draw", "training_seed",
          "machine_type", "machine_id", "auc", "pauc"]
COLD, TRAINED, SPECTRAL, FIXED_FLOOR, AE = ("cold start", "ssad trained on the set", "floor (spectral_stats)",
                                            "floor (sanity_synth.py)", "baseline AE (reference_ae.py)")
#: the issue's targets: AUC margins against the references
FLOOR_MARGIN, TRAINED_MARGIN_ALL, TRAINED_MARGIN_10, AE_MARGIN, FIRST_SCORE_SECONDS = 0.0, 0.03, 0.05, 0.05, 60.0


@dataclass
class DataSet:
    """One root to measure: real (judged per type) or synthetic held-out units (judged on the mean, against the AE)."""

    name: str
    root: Path
    synthetic: bool
    data_seed: int | None = None
    training_seeds: list[int] = field(default_factory=list)


def encoder_identity(source: str) -> dict:
    """What the encoder is, for the report: its name, the sha256 of its weights, and its provenance when shipped."""
    from ssad.models.runs import resolve_checkpoint

    path = Path(source)
    provenance = {}
    if source == "pretrained":
        import ssad

        folder = Path(ssad.__file__).parent / "pretrained"
        weights = sorted(folder.glob("*.safetensors"))
        if (folder / "provenance.json").is_file():
            provenance = json.loads((folder / "provenance.json").read_text())
        path = weights[0] if weights else folder
    elif (path / "model.safetensors").is_file():
        path = path / "model.safetensors"
    else:
        path = resolve_checkpoint(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "unknown"
    shown = source if source == "pretrained" else "/".join(Path(source).resolve().parts[-3:])
    return {"source": shown, "weights": path.name, "sha256": digest, "provenance": provenance}


def append_rows(path: Path, rows: list[dict]) -> None:
    """Add `rows` to the csv at `path`, with a header when the file is new (a measurement adds to the ones before)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def pretraining_seed(identity: dict, given: int | None) -> int | None:
    """The synthetic data seed the encoder was trained on: `--pretrain-seed`, else `corpus_seed` in its provenance."""
    if given is not None:
        return given
    def find(value: object) -> object:
        if isinstance(value, dict):
            if "corpus_seed" in value:
                return value["corpus_seed"]
            corpus = value.get("corpus")
            if isinstance(corpus, dict) and ("corpus_seed" in corpus or "seed" in corpus):
                return corpus.get("corpus_seed", corpus.get("seed"))  # "seed" alone: provenance before 2026-12
            return next((found for v in value.values() if (found := find(v)) is not None), None)
        return None

    seed = find(identity["provenance"])
    return int(seed) if seed is not None else None


def clips_key(clips: Sequence, extra: str = "") -> str:
    """A cache file's key for these clips (their paths in order, and `extra`)."""
    return hashlib.sha256(("\n".join(str(c.path) for c in clips) + extra).encode()).hexdigest()[:16]


def set_outputs(model, root: Path, cache: Path) -> tuple[list, dict, list, dict]:  # noqa: ANN001
    """Normal training clips and test clips of a root with the encoder's per-clip outputs, cached in `cache`."""
    from ssad.audio.layout import index_root, select
    from ssad.core.atomic import atomic_path
    from ssad.encoder import clip_outputs
    from ssad.evaluation.run import default_cache_dir

    clips = index_root(root)
    train, test = select(clips, split="train", label="normal"), select(clips, split="test")
    result = []
    windows = "\nwindow_to_end" if getattr(model, "window_to_end", False) else ""  # the same weights hear more frames
    for part in (train, test):
        path = cache / f"{clips_key(part, windows)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                outputs = {name: npz[name] for name in npz.files}
        else:
            outputs = clip_outputs(model, [c.path for c in part], cache_dir=default_cache_dir(), progress=True)
            cache.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                np.savez(tmp, **outputs)
        result += [part, outputs]
    return tuple(result)  # type: ignore[return-value]


def enrol(model, outputs: dict[str, np.ndarray], ids: Sequence[str], scorers: Sequence[str]):  # noqa: ANN001, ANN201
    """An empty detector of `model` (`ssad detector --pretrained`) with each machine enrolled in turn, as `ssad enroll` adds them."""
    from ssad.detector import Detector
    from ssad.detector.enrollment import refit_machine

    ids = np.asarray(ids)
    detector = Detector.empty(model, scorers=scorers)
    for machine in sorted(set(ids.tolist())):
        detector, _ = refit_machine(detector, machine, {name: value[ids == machine] for name, value in outputs.items()})
    return detector


def evaluate_detector(detector, test: list, test_outputs: dict) -> list:  # noqa: ANN001
    """`ssad.evaluation.metrics.evaluate` rows (per ID and a mean per type) of the detector's scorers on its machines' test clips."""
    from ssad.audio.clips import clip_key
    from ssad.evaluation.metrics import evaluate
    from ssad.evaluation.table import ScoreTable
    from ssad.scoring import select_input

    ids = [clip_key(c) for c in test]
    tables = [ScoreTable.from_clips(test, scorer.score(select_input(scorer, test_outputs), ids), name)
              for name, scorer in detector.scorers.items()]
    return evaluate(ScoreTable.concat(tables))


def cold_start_rows(model, data: DataSet, scorers: Sequence[str], sizes: Sequence[int], draws: int,  # noqa: ANN001
                    cache: Path) -> list[dict]:
    """Every machine of the set enrolled from n of its normal training clips (each n drawn `draws` times) and all."""
    from tqdm import tqdm

    from ssad.audio.clips import clip_key

    train, train_out, test, test_out = set_outputs(model, data.root, cache)
    ids = np.array([clip_key(c) for c in train])
    test_ids = np.array([clip_key(c) for c in test])
    machines = sorted(set(ids.tolist()))
    pools = {m: np.flatnonzero(ids == m) for m in machines}
    plans = [(ALL, 0, None)] + [(n, draw, n) for n in sizes for draw in range(draws)
                                if n < min(len(p) for p in pools.values())]
    rows = []
    for clips, draw, n in tqdm(plans, desc=f"{data.name}: enrolments", unit="enrolment"):
        rng = np.random.default_rng([n or 0, draw])
        pick = np.concatenate([pools[m] if n is None else np.sort(rng.choice(pools[m], n, replace=False))
                               for m in machines])
        chosen = {name: value[pick] for name, value in train_out.items()}
        enrolled = {IN_TURN: [enrol(model, chosen, ids[pick], scorers)]}
        enrolled[ALONE] = [enrol(model, {k: v[ids[pick] == m] for k, v in chosen.items()}, ids[pick][ids[pick] == m],
                                 scorers) for m in machines]
        for mode, detectors in enrolled.items():
            for detector in detectors:
                own = np.isin(test_ids, detector.machine_ids)
                results = evaluate_detector(detector, [c for c, k in zip(test, own, strict=True) if k],
                                            {k: v[own] for k, v in test_out.items()})
                rows += [{"set": data.name, "data_seed": data.data_seed, "detector": COLD, "scorer": r.scorer,
                          "enrolment": mode, "clips": clips, "draw": draw, "training_seed": "",
                          "machine_type": r.machine_type, "machine_id": r.machine_id, "auc": r.auc, "pauc": r.pauc}
                         for r in results if r.machine_id != "mean"]
    return rows


def trained_rows(data: DataSet, work: Path) -> list[dict]:
    """ssad trained on the set (quality.py's classifier runs: reused when complete under `work`, else trained)."""
    rows = []
    for seed in data.training_seeds:
        run_dataset(data.name, data.root, seed, work, ["classifier"], {}, reuse=True)
        with (work / data.name / f"seed{seed}" / "eval" / "classifier" / "results.csv").open() as f:
            for r in csv.DictReader(f):
                if r["machine_id"] != "mean" and r["scorer"] == TRAINED_SCORER:
                    rows.append(_reference_row(data, TRAINED, r["scorer"], r["machine_type"], r["machine_id"],
                                               float(r["auc"]), float(r["pauc"]), seed))
    return rows


def spectral_floor_rows(data: DataSet, work: Path) -> list[dict]:
    """The floor as quality.py computes it: the spectral_stats detector's Gaussian, per type."""
    family, scorer = FLOOR.split(":")
    rows = run_dataset(data.name, data.root, data.data_seed or 0, work, [family], {}, reuse=True)  # one folder per root
    return [_reference_row(data, SPECTRAL, scorer, r["machine_type"], "mean", r["auc"], r["pauc"])
            for r in rows if r["detector"] == FLOOR]


def _per_type_log(text: str) -> dict[str, tuple[float, float]]:
    """`TYPE auc A pauc P ...` lines of the checks' reference scripts."""
    return {m[1]: (float(m[2]), float(m[3])) for m in re.finditer(r"^(\S+) auc ([\d.]+) pauc ([\d.]+)", text, re.M)}


def fixed_floor_rows(data: DataSet, work: Path, script: Path) -> list[dict]:
    """The checks' fixed floor (`sanity_synth.py`), run once per root and kept in `work`."""
    log = work / "fixed-floor" / f"{data.name}-{data.data_seed}.log"
    if not log.is_file():
        if not script.is_file():
            print(f"no {script.name} at {script.parent}: the fixed floor is left out", file=sys.stderr)
            return []
        done = subprocess.run([sys.executable, str(script), str(data.root)], capture_output=True, text=True, check=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout)
    return [_reference_row(data, FIXED_FLOOR, "floor", t, "mean", a, p)
            for t, (a, p) in _per_type_log(log.read_text()).items()]


def reference_ae_rows(data: DataSet, logs: Path, script: Path, run: bool) -> list[dict]:
    """The checks' reference AE: its log cached by the audio's content (the checks' own key), else run when asked."""
    key = subprocess.run(["bash", "-c", "find . -name '*.wav' -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-16"],
                         cwd=data.root, capture_output=True, text=True, check=True).stdout.strip()
    log = logs / f"reference-ae-{key}.log"
    if not (log.is_file() and "mean AUC" in log.read_text()):
        if not run or not script.is_file():
            print(f"{data.name}: no cached reference AE log ({log.name}); pass --run-reference-ae to run it (~20 min)",
                  file=sys.stderr)
            return []
        done = subprocess.run([sys.executable, str(script), str(data.root)], capture_output=True, text=True, check=True)
        logs.mkdir(parents=True, exist_ok=True)
        log.write_text(done.stdout)
    return [_reference_row(data, AE, "ae", t, "mean", a, p) for t, (a, p) in _per_type_log(log.read_text()).items()]


def _reference_row(data: DataSet, detector: str, scorer: str, machine_type: str, machine_id: str, auc: float,
                   pauc: float, training_seed: int | str = "") -> dict:
    return {"set": data.name, "data_seed": data.data_seed, "detector": detector, "scorer": scorer, "enrolment": "",
            "clips": ALL, "draw": 0, "training_seed": training_seed, "machine_type": machine_type,
            "machine_id": machine_id, "auc": auc, "pauc": pauc}


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB: VmHWM where Linux gives it, else getrusage's maxrss.

    A spawned process's getrusage maxrss starts at its parent's resident size at the fork (Linux keeps it
    across exec), so it would report the measuring process, not the detector; VmHWM belongs to the new image.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        found = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
        if found:
            return int(found[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_to_detector(encoder: str, root: str, clips_per_machine: int | None) -> dict:
    """In a fresh process: import ssad, load the encoder, enrol every machine of the root, score one clip.

    Returns seconds per step, the peak resident memory (MB) and the load average before and after.
    """
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    from ssad.audio.clips import clip_key
    from ssad.audio.layout import index_root, select
    from ssad.encoder import clip_outputs, load

    model = load(encoder)
    loaded = time.perf_counter()
    clips = index_root(root)
    train = select(clips, split="train", label="normal")
    if clips_per_machine is not None:
        by_machine = defaultdict(list)
        for clip in train:
            by_machine[clip_key(clip)].append(clip)
        train = [c for group in by_machine.values() for c in group[:clips_per_machine]]
    outputs = clip_outputs(model, [c.path for c in train])
    detector = enrol(model, outputs, [clip_key(c) for c in train], [HEADLINE])
    enrolled = time.perf_counter()
    first = select(clips, split="test")[0]
    detector.score(first.path, machine_ids=clip_key(first))
    scored = time.perf_counter()
    return {"machines": len(detector.machine_ids), "clips": len(train), "load_s": loaded - start,
            "enrol_s": enrolled - loaded, "score_s": scored - enrolled, "total_s": scored - start,
            "maxrss_mb": peak_memory_mb(),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def timings(encoder: str, data: DataSet) -> list[dict]:
    """Time to a usable detector with all clips and with 5 per machine, each in a fresh process."""
    context = multiprocessing.get_context("spawn")
    out = []
    for clips in (ALL, 5):
        with context.Pool(1) as pool:
            measured = pool.apply(time_to_detector, (encoder, str(data.root), None if clips == ALL else clips))
        out.append({"set": data.name, "data_seed": data.data_seed, "clips_per_machine": clips, **measured})
    return out


def type_means(rows: list[dict]) -> dict[tuple, tuple[float, float, float]]:
    """(set, data_seed, detector, scorer, enrolment, clips, machine_type) -> mean AUC, mean pAUC, AUC spread.

    Per ID first averaged over draws and training seeds, then over the type's IDs; the spread is the standard
    deviation over draws (or training seeds) of the type's mean AUC.
    """
    per_run: dict[tuple, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["set"], r["data_seed"], r["detector"], r["scorer"], r["enrolment"], str(r["clips"]), r["machine_type"])
        per_run[key][(r["draw"], r["training_seed"])].append((r["auc"], r["pauc"]))
    out = {}
    for key, runs in per_run.items():
        means = np.array([np.mean(v, axis=0) for v in runs.values()])
        out[key] = (float(means[:, 0].mean()), float(means[:, 1].mean()),
                    float(means[:, 0].std(ddof=1)) if len(means) > 1 else 0.0)
    return out


def _cell(means: dict, key: tuple, spread: bool = True) -> str:
    if key not in means:
        return "–"
    auc, pauc, sd = means[key]
    return f"{100 * auc:.1f} / {100 * pauc:.1f}" + (f" ± {100 * sd:.1f}" if spread and sd else "")


def _sets(rows: list[dict]) -> list[tuple[str, object]]:
    return sorted({(r["set"], r["data_seed"]) for r in rows}, key=lambda s: (s[1] is not None, s[0], str(s[1])))


def _types(rows: list[dict], name: str, seed: object) -> list[str]:
    return sorted({r["machine_type"] for r in rows if (r["set"], r["data_seed"]) == (name, seed) and r["detector"] == COLD})


def _set_label(name: str, seed: object) -> str:
    return name if seed is None else f"{name} (seed {seed})"


def targets(rows: list[dict], timed: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """(target, where, measured, needed, met/missed) for each of the issue's targets the figures allow."""
    means = type_means(rows)
    out = []

    def get(name, seed, detector, scorer, enrolment, clips, machine_type):  # noqa: ANN001, ANN202
        value = means.get((name, seed, detector, scorer, enrolment, str(clips), machine_type))
        return None if value is None else value[0]

    for name, seed in _sets(rows):
        if seed is not None:
            types = _types(rows, name, seed)
            cold = [get(name, seed, COLD, HEADLINE, IN_TURN, ALL, t) for t in types]
            ae = [get(name, seed, AE, "ae", "", ALL, t) for t in types]
            if None not in ae:
                got, need = float(np.mean(cold)), float(np.mean(ae)) + AE_MARGIN
                out.append(("cold start (all clips) >= baseline AE + 0.05, mean over types", _set_label(name, seed),
                            f"{100 * got:.1f}", f"{100 * need:.1f}", "met" if got >= need else "missed"))
            continue
        for t in _types(rows, name, seed):
            cold_all, cold_10 = (get(name, seed, COLD, HEADLINE, IN_TURN, n, t) for n in (ALL, 10))
            floors = [f for f in (get(name, seed, d, s, "", ALL, t) for d, s in ((SPECTRAL, "gaussian"),
                                                                                  (FIXED_FLOOR, "floor")))
                      if f is not None]
            trained = get(name, seed, TRAINED, TRAINED_SCORER, "", ALL, t)
            where = f"{name} / {t}"
            if floors:
                need = max(floors) + FLOOR_MARGIN
                out.append(("cold start (all clips) >= the type's floor", where, f"{100 * cold_all:.1f}",
                            f"{100 * need:.1f}", "met" if cold_all >= need else "missed"))
            for label, got, margin in (("all clips", cold_all, TRAINED_MARGIN_ALL), ("10 clips", cold_10, TRAINED_MARGIN_10)):
                if trained is not None and got is not None:
                    need = trained - margin
                    out.append((f"cold start ({label}) within {margin:.2f} AUC of ssad trained on the set", where,
                                f"{100 * got:.1f}", f"{100 * need:.1f}", "met" if got >= need else "missed"))
    for t in timed:
        if t["clips_per_machine"] == 5:
            out.append(("first score of a new machine (import, load, enrol 5 clips, score one) < 60 s",
                        _set_label(t["set"], t["data_seed"]), f"{t['total_s']:.1f} s (load {t['load_before']:.1f})",
                        f"{FIRST_SCORE_SECONDS:.0f} s", "met" if t["total_s"] < FIRST_SCORE_SECONDS else "missed"))
    return out


def markdown(rows: list[dict], timed: list[dict], identity: dict, pretrain_seed: int | None, draws: int,
             seconds: float, peak_mb: float) -> str:
    """cold_start.md: the encoder, the cold-start table beside the references, timings and the targets."""
    means = type_means(rows)
    sizes = sorted({int(r["clips"]) for r in rows if r["detector"] == COLD and r["clips"] != ALL})
    prov = identity["provenance"]
    held_out = sorted({r["data_seed"] for r in rows if r["data_seed"] is not None})
    shipped = identity["source"] == "pretrained"
    lines = ["# Cold start: a new machine enrolled into the encoder, nothing retrained", "",
             f"Encoder: `{identity['source']}` ({identity['weights']}, sha256 `{identity['sha256'][:16]}`)"
             + (f"; provenance: `{json.dumps({k: prov[k] for k in PROVENANCE_SHOWN if k in prov})}`" if prov
                else "; no provenance.json") + "."
             + ("" if shipped else " **Not the shipped encoder**: a run or detector passed with `--encoder`; rerun "
                "with `--encoder pretrained` for the package's figures."),
             f"It was trained on synthetic data seed {pretrain_seed if pretrain_seed is not None else 'unknown'}; "
             f"the synthetic rows are units of seed(s) {', '.join(map(str, held_out)) or 'none'}, which it never heard. "
             + ("Its windows reach each clip's last frame (`window_to_end`)." if identity.get("window_to_end") else
                "Its windows stop at the last whole hop (a model saved before `window_to_end`)."), "",
             "AUC / pAUC (FPR ≤ 0.1) in %, mean over a type's IDs; each machine enrolled in turn into an empty detector "
             "(`ssad enroll`) from n of its normal training clips, its test clips scored. For n < all: mean over "
             f"{draws} seeded random draws, ± the standard deviation of the type's AUC over draws. Headline scorer: "
             f"`{HEADLINE}` (the shipped detector's default: the encoder's Gaussian and the spectral floor, "
             "standardised per machine and added); its members and kNN (k = 1, cosine) below. ssad trained: "
             f"quality.py's `configs/demo.yaml` runs on the set, by its default scorer `{TRAINED_SCORER}` in every "
             "table (mean over training seeds, ± their spread). Per ID and per draw: "
             "`cold_start.csv`. Made by `experiments/cold_start.py`.", ""]
    for scorer in SCORERS:
        lines += [f"## Scorer: {scorer}", "",
                  "| set | type | " + " | ".join(f"{n} clips" for n in sizes) + " | all clips | alone, all clips | "
                  "ssad trained (demo.yaml, gaussian) | floor (spectral_stats) | floor (sanity_synth.py) | baseline AE (reference_ae.py) |",
                  "|" + "---|" * (len(sizes) + 8)]
        for name, seed in _sets(rows):
            types = _types(rows, name, seed)
            for t in [*types, "mean"] if len(types) > 1 else types:
                cells = []
                for detector, sc, mode, clips in ([(COLD, scorer, IN_TURN, n) for n in [*sizes, ALL]]
                                                  + [(COLD, scorer, ALONE, ALL), (TRAINED, TRAINED_SCORER, "", ALL),
                                                     (SPECTRAL, "gaussian", "", ALL), (FIXED_FLOOR, "floor", "", ALL),
                                                     (AE, "ae", "", ALL)]):
                    if t == "mean":
                        parts = [means.get((name, seed, detector, sc, mode, str(clips), x)) for x in types]
                        cells.append("–" if None in parts else
                                     f"{100 * np.mean([p[0] for p in parts]):.1f} / {100 * np.mean([p[1] for p in parts]):.1f}")
                    else:
                        cells.append(_cell(means, (name, seed, detector, sc, mode, str(clips), t)))
                lines.append(f"| {_set_label(name, seed)} | {t} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Time to a usable detector", "",
              "A fresh process imports ssad, loads the encoder, computes the outputs of the enrolment clips (no "
              "feature cache), enrols every machine of the set (the default scorer) and scores one test clip. Peak memory is "
              "that process's maximum resident set size. The machine is shared: the load average (1 min) is given "
              "before and after each timing.", "",
              "| set | clips per machine | machines | clips | import + load s | enrol s | first score s | total s | "
              "peak MB | load before / after |", "|" + "---|" * 10]
    for t in timed:
        lines.append(f"| {_set_label(t['set'], t['data_seed'])} | {t['clips_per_machine']} | {t['machines']} | "
                     f"{t['clips']} | {t['load_s']:.1f} | {t['enrol_s']:.1f} | {t['score_s']:.2f} | {t['total_s']:.1f} | "
                     f"{t['maxrss_mb']:.0f} | {t['load_before']:.2f} / {t['load_after']:.2f} |")
    lines += ["", f"## The issue's targets (judged on `{HEADLINE}`, from the figures above)", "",
              "| target | where | measured | needed | |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in targets(rows, timed)]
    lines += ["", "The floor a real type is judged against is the higher of its two floors: `spectral_stats:gaussian` "
              "as `experiments/quality.py` computes it, and the checks' fixed `sanity_synth.py` (a per-ID Ledoit-Wolf "
              "Gaussian on each clip's log-mel mean and std). The baseline AE is the checks' `reference_ae.py` (DCASE "
              "2020 baseline, 100 epochs, one model per type), from its cached log, on synthetic sets only. "
              f"Whole benchmark: {seconds / 60:.0f} min, peak memory of the measuring process {peak_mb:.0f} MB.", ""]
    return "\n".join(lines)


def write(out: Path, name: str, rows: list[dict], text: str) -> None:
    """The CSV of every row and the Markdown report, each written atomically."""
    from ssad.core.atomic import atomic_path, write_text_atomic

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / f"{name}.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**r, "data_seed": "" if r["data_seed"] is None else r["data_seed"],
                          "auc": f"{r['auc']:.4f}", "pauc": f"{r['pauc']:.4f}"} for r in rows)
    write_text_atomic(out / f"{name}.md", text)


def data_sets(args: argparse.Namespace, pretrain_seed: int | None) -> list[DataSet]:
    """The roots to measure: the real development sets, the synthetic seeds (generated when absent), `--data` roots."""
    sets = []
    real = Path(args.real_dev) if args.real_dev else None
    for name in REAL_SETS if real else ():
        if (real / name).is_dir():
            sets.append(DataSet(name, real / name, False, None, list(args.real_seeds)))
    for seed in args.synthetic_seeds:
        if seed == pretrain_seed and not args.allow_heard:
            raise SystemExit(f"synthetic seed {seed} is the encoder's pretraining seed: its units are not held out "
                             "(choose other --synthetic-seeds, or --allow-heard to measure them anyway)")
        root = synthetic_root(args.synthetic_dir / f"synth-s{seed}", seed)
        sets.append(DataSet("synthetic", root, True, seed, [seed]))
    sets += [DataSet(Path(root).name, Path(root), False, None, list(args.real_seeds)) for root in args.data]
    return sets


def main(argv: list[str] | None = None) -> int:
    from ssad.scoring.catalogue import PRETRAINED_SCORERS

    if SCORERS != PRETRAINED_SCORERS:
        raise SystemExit(f"cold_start.SCORERS {SCORERS} is not what ssad detector --pretrained has: {PRETRAINED_SCORERS}")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="pretrained",
                        help="the encoder: 'pretrained' (the weights in the package), a run folder or a saved detector")
    parser.add_argument("--pretrain-seed", type=int, default=None,
                        help="the synthetic seed the encoder was trained on (default: from its provenance.json)")
    parser.add_argument("--allow-heard", action="store_true", help="measure a synthetic seed the encoder was trained on")
    parser.add_argument("--synthetic-seeds", type=int, nargs="*", default=[2, 3], help="held-out synthetic default seeds")
    parser.add_argument("--synthetic-dir", type=Path, default=None,
                        help="where synth-s<SEED> roots are (generated there when absent; default WORK/data)")
    parser.add_argument("--real-dev", default=os.environ.get("SSAD_REAL_DEV", ""),
                        help="root of the real development sets (default $SSAD_REAL_DEV; '' = none)")
    parser.add_argument("--data", nargs="*", default=[], help="other roots to measure (DCASE layout)")
    parser.add_argument("--real-seeds", type=int, nargs="+", default=[1], help="training seeds of ssad trained on a set")
    parser.add_argument("--trained-work", type=Path, default=PROJECT / "runs" / "quality",
                        help="quality.py's work folder: its complete runs are reused, missing ones trained there")
    parser.add_argument("--compare", nargs="*", default=["trained", "floor", "fixed-floor", "ae"],
                        choices=["trained", "floor", "fixed-floor", "ae"], help="references to put beside cold start")
    parser.add_argument("--reference-ae-logs", type=Path, default=None,
                        help="folder of the checks' cached reference-ae-<key>.log files (default WORK/reference-ae)")
    parser.add_argument("--run-reference-ae", action="store_true", help="run reference_ae.py where no log is cached")
    parser.add_argument("--acceptance", type=Path, default=ACCEPTANCE, help="folder of sanity_synth.py and reference_ae.py")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="enrolment clips per machine, besides all")
    parser.add_argument("--draws", type=int, default=3, help="random enrolment subsets per size")
    parser.add_argument("--no-timing", action="store_true", help="skip the time-to-detector measurements")
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "cold_start", help="caches and floor runs")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where cold_start.csv/.md go")
    parser.add_argument("--name", default="cold_start", help="file stem of the outputs")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    args.synthetic_dir = args.synthetic_dir or args.work / "data"
    start = time.time()
    from ssad.core.errors import SsadError
    from ssad.encoder import load

    try:
        identity = encoder_identity(args.encoder)
        model = load(args.encoder)
        identity["window_to_end"] = model.window_to_end
    except SsadError as error:
        raise SystemExit(f"--encoder {args.encoder}: {error}") from None
    seed = pretraining_seed(identity, args.pretrain_seed)
    if seed is None:
        print("warning: the encoder's pretraining seed is unknown (no provenance.json, no --pretrain-seed): the "
              "synthetic units may not be held out", file=sys.stderr)
    rows, timed = [], []
    cache = args.work / "outputs" / identity["sha256"][:16]
    for data in data_sets(args, seed):
        print(f"{_set_label(data.name, data.data_seed)}: cold start", flush=True)
        rows += cold_start_rows(model, data, SCORERS, args.sizes, args.draws, cache)
        if "trained" in args.compare:
            rows += trained_rows(data, args.trained_work)
        if "floor" in args.compare:
            rows += spectral_floor_rows(data, args.work)
        if "fixed-floor" in args.compare:
            rows += fixed_floor_rows(data, args.work, args.acceptance / "sanity_synth.py")
        if "ae" in args.compare and data.synthetic:
            rows += reference_ae_rows(data, args.reference_ae_logs or args.work / "reference-ae",
                                      args.acceptance / "reference_ae.py", args.run_reference_ae)
        if not args.no_timing:
            timed += timings(args.encoder, data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = markdown(rows, timed, identity, seed, args.draws, time.time() - start, peak)
    write(args.out, args.name, rows, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
