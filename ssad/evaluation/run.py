"""The evaluation chain: run + corpus -> outputs -> scorers -> score tables -> DCASE files, results, plots."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssad.audio.clips import Clip, clip_key, is_synthetic_class, machine_type_of
from ssad.audio.layout import index_root, select
from ssad.core.errors import SsadError
from ssad.core.tracking import wandb_mode, wandb_project
from ssad.detector import Detector
from ssad.detector.store import has_updates
from ssad.encoder import Encoder, clip_outputs, load
from ssad.encoder.encoder import SPECTRUM
from ssad.evaluation.metrics import ResultRow
from ssad.evaluation.plots import plot_tsne_pair, safe_name
from ssad.evaluation.report import write_evaluation
from ssad.evaluation.table import ScoreTable, ensemble_tables
from ssad.models.runs import unseen_clips
from ssad.scoring import SpectrumScorer, select_input
from ssad.scoring.catalogue import FLOOR
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.thresholds import DEFAULT_FALSE_ALARM_RATE, AlarmThreshold

__all__ = ["evaluate_run", "evaluate_ensemble", "default_cache_dir"]

log = logging.getLogger("ssad")


def default_cache_dir() -> Path:
    """Where log-mel features are cached: $SSAD_CACHE_DIR, else ~/.cache/ssad/features."""
    return Path(os.environ.get("SSAD_CACHE_DIR") or Path.home() / ".cache" / "ssad" / "features")


def _model_machine_types(model: Encoder) -> list[str] | None:
    """The machine types a model was trained on, where it says (a classifier's real classes)."""
    names = [n for n in model.class_names if not is_synthetic_class(n)]
    types = sorted({machine_type_of(n) for n in names}) or list(model.metadata.get("machine_types") or [])
    return types or None


def _test_table(detector: Detector, clips: Sequence[Clip], outputs: dict[str, np.ndarray]) -> ScoreTable:
    ids = [clip_key(c) for c in clips]
    tables = []
    for name, scorer in detector.scorers.items():
        scores = scorer.score(select_input(scorer, outputs), ids)
        tables.append(ScoreTable.from_clips(list(clips), scores, name))
    return ScoreTable.concat(tables)


def _train_table(detector: Detector, clips: Sequence[Clip]) -> ScoreTable:
    """The scorers' own training scores (leave-one-out for kNN), in the order they were fitted."""
    return ScoreTable.concat([ScoreTable.from_clips(list(clips), s.train_scores_, n) for n, s in detector.scorers.items()])


def _tsne_plots(test: Sequence[Clip], raw: np.ndarray, embeddings: np.ndarray, out_dir: Path) -> list[Path]:
    """Per machine type, the t-SNE pair (raw log-mel vs learned embedding) of its first labelled machine."""
    paths = []
    for machine_type in sorted({c.machine_type for c in test}):
        machines = sorted({c.machine_id for c in test if c.machine_type == machine_type and c.label != "unknown"})
        if not machines:
            continue
        index = [i for i, c in enumerate(test) if c.key == (machine_type, machines[0])]
        labels = [test[i].label for i in index]
        if len(set(labels)) < 2 or len(index) < 6:
            continue
        path = out_dir / "plots" / f"tsne_{safe_name(machine_type)}_{machines[0]}.png"
        title = f"{machine_type} {machines[0]}: test clips"
        paths.append(plot_tsne_pair(raw[index], embeddings[index], labels, path, title=title))
    return paths


def _log_to_wandb(out_dir: Path, rows: list[ResultRow], run: str | Path) -> None:
    """Log result table and plots to wandb (offline in the run folder unless the user logged in)."""
    mode = wandb_mode()
    if mode == "disabled":
        return
    try:
        import wandb
    except ImportError:
        return
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    session = wandb.init(project=wandb_project(), dir=str(run_dir), mode=mode,
                         job_type="evaluate", name=f"{run_dir.name}-eval", reinit="finish_previous")
    table = wandb.Table(columns=["scorer", "machine_type", "machine_id", "auc", "pauc"],
                        data=[[r.scorer, r.machine_type, r.machine_id, r.auc, r.pauc] for r in rows])
    images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in sorted((out_dir / "plots").glob("*.png"))}
    session.log({"results": table, **images})
    session.finish()


def evaluate_run(run: str | Path, data: str | Path, out: str | Path, *, scorers: Sequence[str] | None = None,
                 false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, plots: bool = True, device: str = "auto",
                 cache_dir: str | Path | None = None, skip_bad: bool = False, progress: bool = True,
                 machine_types: Sequence[str] | None = None, floor: bool = True) -> list[ResultRow]:
    """Fit the scorers on `data`'s normal training clips, score its test clips, write everything into `out`.

    With `floor`, the spectral floor (`FLOOR`) is evaluated beside the run's scorers on the same clips, so the
    tables show what the model adds; it is not part of the saved detector.

    `out` receives results.csv/.md, scores.csv, thresholds.json, the challenge's per-scorer files,
    plots/ (ROC, histograms, t-SNE) and detector/ (the fitted detector, for `ssad score`; one already there is
    replaced, and kept in detector/replaced/<time>/ when it was updated by enrolment or feedback). Only the machine
    types the model was trained on are evaluated, unless `machine_types` names others.
    """
    out = Path(out)
    model = load(run, device=device)
    types = machine_types or _model_machine_types(model)
    clips = index_root(data, machine_types=types, skip_bad=skip_bad)
    train = select(clips, split="train", label="normal")
    test = select(clips, split="test")
    if not train or not test:
        raise SsadError(f"{data}: needs normal training clips and test clips (found {len(train)} and {len(test)})")
    cache = cache_dir or default_cache_dir()
    detector = Detector.from_clips(model, train, scorers=scorers, false_alarm_rate=false_alarm_rate, cache_dir=cache,
                                   progress=progress, unseen=unseen_clips(run))
    test_outputs = clip_outputs(model, [c.path for c in test], cache_dir=cache, progress=progress)
    train_table = _train_table(detector, train)
    test_table = _test_table(detector, test, test_outputs)
    thresholds = dict(detector.thresholds)
    if floor:
        spectral = SpectrumScorer()
        ids = [clip_key(c) for c in train]
        references = select_input(spectral, detector.references.outputs)
        spectral.fit(references, ids)
        held_out = held_out_scores(spectral, references, ids, detector.references.groups)
        thresholds[FLOOR] = AlarmThreshold(false_alarm_rate, FLOOR).fit(held_out, ids, detector.references.groups)
        train_table = ScoreTable.concat([train_table, ScoreTable.from_clips(list(train), spectral.train_scores_, FLOOR)])
        test_scores = spectral.score(select_input(spectral, test_outputs), [clip_key(c) for c in test])
        test_table = ScoreTable.concat([test_table, ScoreTable.from_clips(list(test), test_scores, FLOOR)])
    test_raw = test_outputs[SPECTRUM][:, : model.log_mel.n_mels]
    out.mkdir(parents=True, exist_ok=True)
    rows = write_evaluation(train_table, test_table, out, false_alarm_rate=false_alarm_rate, plots=plots,
                            thresholds=thresholds,
                            fallbacks={name: s.fallbacks_ for name, s in detector.scorers.items()},
                            covariances={name: getattr(s, "covariance_by_type_", {}) for name, s in detector.scorers.items()},
                            directions={name: getattr(s, "leading_by_id_", {}) for name, s in detector.scorers.items()})
    if plots and "embedding" in test_outputs:
        _tsne_plots(test, test_raw, test_outputs["embedding"], out)
    # a re-run replaces the detector of the run before; one a user enrolled into or gave feedback is kept whole
    detector.save(out / "detector", replace=True, keep_replaced=has_updates(out / "detector"))
    _log_to_wandb(out, rows, run)
    print((out / "results.md").read_text())
    return rows


def _member_tables(spec: str) -> tuple[ScoreTable, list[str], str]:
    """`EVAL_DIR[:SCORER]` -> its scores table (scorers renamed `<dir>:<scorer>`), member names, label."""
    folder, _, scorer = spec.partition(":")
    path = Path(folder) / "scores.csv"
    if not path.is_file():
        raise SsadError(f"{folder}: no scores.csv (is it an `ssad evaluate` output folder?)")
    table = ScoreTable.from_csv(path)
    chosen = [scorer] if scorer else table.scorers
    missing = [s for s in chosen if s not in table.scorers]
    if missing:
        raise SsadError(f"{path}: no scorer {missing}; it has {table.scorers}")
    prefix = Path(folder).name
    parts = []
    for name in chosen:
        part = table.filter(scorer=name)
        part.scorer = np.full(len(part), f"{prefix}:{name}")
        parts.append(part)
    return ScoreTable.concat(parts), [f"{prefix}:{n}" for n in chosen], prefix


def evaluate_ensemble(members: Sequence[str], out: str | Path, *, weights: Sequence[float] | None = None,
                      false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, plots: bool = True, name: str = "ensemble") -> list[ResultRow]:
    """Combine evaluated detectors' scores (per-ID standardised on training clips, weighted) and evaluate."""
    tables, names = [], []
    for spec in members:
        table, member_names, _ = _member_tables(spec)
        tables.append(table)
        names += member_names
    if weights is not None and len(weights) != len(names):
        raise SsadError(f"{len(weights)} weights for {len(names)} members ({names})")
    everything = ScoreTable.concat(tables)
    train, test = everything.filter(split="train"), everything.filter(split="test")
    weight_map = dict(zip(names, weights, strict=True)) if weights is not None else None
    ensemble_train, ensemble_test = ensemble_tables(train, test, names, name=name, weights=weight_map)
    rows = write_evaluation(ensemble_train, ensemble_test, out, false_alarm_rate=false_alarm_rate, plots=plots)
    print((Path(out) / "results.md").read_text())
    return rows
