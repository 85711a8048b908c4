"""One call from score tables to everything an evaluation leaves on disk: challenge files, thresholds, results, plots."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ssad.evaluation.files import write_challenge_files, write_results
from ssad.evaluation.metrics import ResultRow, evaluate
from ssad.evaluation.plots import plot_histograms, plot_roc, safe_name
from ssad.evaluation.table import ScoreTable
from ssad.scoring.thresholds import DEFAULT_FALSE_ALARM_RATE, AlarmThreshold, save_thresholds

__all__ = ["alarm_notes", "covariance_notes", "write_evaluation", "thin_id_notes"]

logger = logging.getLogger(__name__)


def write_evaluation(
    train: ScoreTable,
    test: ScoreTable,
    out_dir: str | Path,
    *,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    plots: bool = True,
    max_fpr: float = 0.1,
    thresholds: Mapping[str, AlarmThreshold] | None = None,
    fallbacks: Mapping[str, Mapping[str, str]] | None = None,
    covariances: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
    directions: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
) -> list[ResultRow]:
    """Evaluate every scorer in `test` and write the results into `out_dir`; returns the result rows.

    Per scorer an `AlarmThreshold` aiming at `false_alarm_rate` is fitted on its rows of `train` (normal training
    scores, each clip held out alone: pass `thresholds` set from whole recordings held out where there are any), test clips are decided, and `out_dir/<scorer>/` receives the challenge's
    ``anomaly_score_*``/``decision_result_*`` files. `out_dir` gets ``scores.csv`` (train + test rows),
    ``thresholds.json``, ``results.csv``/``results.md`` (labelled test clips only; precision/recall/F1 of
    the decisions included) and, if `plots`, ROC curves and score histograms in ``plots/``. `fallbacks`
    (scorer -> id -> what a thin ID got) and the thresholds' own go into a section of ``results.md``, and so do
    `covariances` (scorer -> machine type -> the covariance a Gaussian chose from normal clips, and why) and
    `directions` (scorer -> machine ID -> its file-order drift and the principal directions its Gaussian keeps).
    """
    out_dir = Path(out_dir)
    scorers = test.scorers
    if not scorers:
        raise ValueError("the test table is empty; nothing to evaluate")
    folders = {s: safe_name(s) for s in scorers}
    if len(set(folders.values())) < len(folders):
        raise ValueError(f"scorer names {scorers} collide once made safe for folder names: {folders}")
    fitted: dict[str, AlarmThreshold] = {}
    decisions = np.zeros(len(test), dtype=np.int64)
    for scorer in scorers:
        if thresholds is not None and scorer in thresholds:
            fitted[scorer] = thresholds[scorer]
        else:
            tr = train.filter(scorer=scorer)
            if not len(tr):
                raise ValueError(
                    f"no training scores for scorer {scorer!r}; the train table has {train.scorers}"
                )
            fitted[scorer] = AlarmThreshold(false_alarm_rate, scorer).fit(tr.score, tr.ids)
        sel = test.scorer == scorer
        part = test.take(sel)
        decisions[sel] = fitted[scorer].decide(part.score, part.ids)
        write_challenge_files(part, out_dir / folders[scorer], decisions[sel])
    save_thresholds(fitted, out_dir / "thresholds.json")
    ScoreTable.concat([train, test]).to_csv(out_dir / "scores.csv")
    rows = evaluate(test, decisions=decisions, max_fpr=max_fpr)
    write_results(rows, out_dir)
    notes = (alarm_notes(fitted) + covariance_notes(covariances or {}) + direction_notes(directions or {})
             + thin_id_notes(train, fallbacks or {}, fitted))
    if notes:
        with open(out_dir / "results.md", "a", encoding="utf-8") as md:
            md.write("\n" + "\n".join(notes) + "\n")
    if plots:
        plot_roc(test, out_dir / "plots", max_fpr=max_fpr)
        plot_histograms(test, fitted, out_dir / "plots")
    logger.info("evaluation of %d scorer(s) written to %s", len(scorers), out_dir)
    return rows


def alarm_notes(thresholds: Mapping[str, AlarmThreshold]) -> list[str]:
    """Markdown lines: the false-alarm rate the thresholds aim at, and the machines whose recordings shift."""
    rates = sorted({t.rate_of(m) for t in thresholds.values() for m in t.threshold_})
    lines = ["## Decisions", "",
             f"Each machine's threshold aims at {' / '.join(f'{r:g}' for r in rates)} false alarms on recordings made "
             "later (set from its training clips' scores with each recording held out); *false alarms* and *recall* "
             "above are the shares of normal and anomalous test clips over it.", ""]
    shifting = sorted({(m, t.shift_of(m)) for t in thresholds.values() for m in t.threshold_ if t.shift_of(m).shifting},
                      key=lambda item: item[0])
    seen: set[str] = set()
    for machine, shift in shifting:
        if machine not in seen:
            seen.add(machine)
            lines.append(f"- {machine}: {shift.format()}")
    return lines + ([""] if seen else [])


def covariance_notes(covariances: Mapping[str, Mapping[str, Mapping[str, object]]]) -> list[str]:
    """Markdown lines: per scorer and machine type, which covariance a Gaussian chose and the evidence it used."""
    rows = [(scorer, machine_type, choice) for scorer, by_type in covariances.items()
            for machine_type, choice in sorted(by_type.items()) if "nll_per_id" in choice or "why" in choice]
    if not rows:
        return []
    lines = ["## Covariance chosen per machine type", "",
             "From normal training clips only: the covariance (each ID's own, or pooled over the type's IDs) under",
             "which clips held out in turn are more likely (mean negative log-likelihood, lower is better).", "",
             "| scorer | machine type | covariance | held-out NLL, own | held-out NLL, pooled | why |",
             "|---|---|---|---|---|---|"]
    for scorer, machine_type, c in rows:
        own, pooled = c.get("nll_per_id"), c.get("nll_type")
        lines.append(f"| {scorer} | {machine_type} | {c['covariance']} | {'' if own is None else f'{own:.1f}'} | "
                     f"{'' if pooled is None else f'{pooled:.1f}'} | {c.get('why', 'the lower NLL')} |")
    return lines + [""]


def direction_notes(directions: Mapping[str, Mapping[str, Mapping[str, object]]]) -> list[str]:
    """Markdown lines saying, per machine known from many clips, how much its clips drift and which directions count."""
    rows = [(scorer, name, r) for scorer, by_id in directions.items() for name, r in sorted(by_id.items())]
    if not rows:
        return []
    lines = ["## Directions kept per machine", "",
             "From normal training clips only: how much a machine's clips drift along their file order (1 = as in",
             "random order; from 4 on, its sound wanders between recordings and only the leading principal directions",
             "of its Gaussian count, the faint ones holding more recording noise than fault).", "",
             "| scorer | machine | file-order drift | directions kept |", "|---|---|---|---|"]
    for scorer, name, r in rows:
        kept = r.get("components")
        lines.append(f"| {scorer} | {name} | {r['drift']:.1f} | {'all' if kept is None else f'the {kept} leading'} |")
    return lines + [""]


def thin_id_notes(train: ScoreTable, fallbacks: Mapping[str, Mapping[str, str]],
                  thresholds: Mapping[str, AlarmThreshold]) -> list[str]:
    """Markdown lines saying, per thin ID and scorer, what the scorer and the threshold fell back to (logged too)."""
    rows = []
    for scorer, threshold in thresholds.items():
        own = fallbacks.get(scorer, {})
        other = getattr(threshold, "fallbacks_", {})
        counts = dict(zip(*np.unique(train.filter(scorer=scorer).ids, return_counts=True), strict=True))
        for name in sorted(set(own) | set(other)):
            rows.append((name, int(counts.get(name, 0)), scorer, own.get(name, "as usual"),
                         other.get(name, "as usual")))
    if not rows:
        return []
    for name, n, scorer, got, threshold in rows:
        logger.warning("%s (%d training clip(s)), %s: scorer %s; threshold %s", name, n, scorer, got, threshold)
    lines = ["## IDs with few training clips", "",
             "Evaluated with fallbacks; their AUC rests on a weaker model of normal.", "",
             "| machine | training clips | scorer | scorer got | threshold |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {n} | {scorer} | {got} | {threshold} |" for name, n, scorer, got, threshold in rows]
    return lines
