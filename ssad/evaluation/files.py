"""The challenge's submission files per machine ID, and the results table as CSV and Markdown."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.evaluation.metrics import MEAN_ID, ResultRow, Summary, summarize
from ssad.evaluation.table import ScoreTable

__all__ = [
    "write_challenge_files",
    "write_results",
    "results_markdown",
    "RESULTS_HEADER",
    "anomaly_score_name",
    "decision_result_name",
]

#: the leading columns of results.csv, exactly; more columns follow them.
RESULTS_HEADER = ("scorer", "machine_type", "machine_id", "auc", "pauc")


def anomaly_score_name(machine_type: str, machine_id: str) -> str:
    """``anomaly_score_<machine_type>_<machine_id>.csv``, as the DCASE 2020 baseline names it."""
    return f"anomaly_score_{machine_type}_{machine_id}.csv"


def decision_result_name(machine_type: str, machine_id: str) -> str:
    """``decision_result_<machine_type>_<machine_id>.csv``, as the DCASE baselines name it."""
    return f"decision_result_{machine_type}_{machine_id}.csv"


def _write_rows(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def write_challenge_files(table: ScoreTable, out_dir: str | Path, decisions: Any = None) -> list[Path]:
    """Write one scorer's test clips as ``anomaly_score_*.csv`` (``file_name,score``) and, given 0/1 `decisions`
    aligned with `table`, ``decision_result_*.csv`` (``file_name,0|1``): no header, file base names, table order.
    """
    scorers = table.scorers
    if len(scorers) > 1:
        raise ValueError(
            f"write_challenge_files takes one scorer's rows; got scorers {scorers}; filter the table first"
        )
    if decisions is not None:
        decisions = np.asarray(decisions)
        if decisions.shape != (len(table),):
            raise ValueError(
                f"decisions has shape {decisions.shape}; expected one per table row ({len(table)},)"
            )
        if not np.all(np.isin(decisions, (0, 1))):
            raise ValueError("decisions must be 0 (normal) or 1 (anomalous)")
    mask = table.split == "test"
    test = table.take(mask)
    dec = None if decisions is None else decisions[mask].astype(int)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    keys = sorted(set(zip(test.machine_type.tolist(), test.machine_id.tolist(), strict=True)))
    names = np.array([os.path.basename(p) for p in test.path.tolist()], dtype=str)
    for mtype, mid in keys:
        sel = (test.machine_type == mtype) & (test.machine_id == mid)
        path = out_dir / anomaly_score_name(mtype, mid)
        _write_rows(path, list(zip(names[sel].tolist(), test.score[sel].tolist(), strict=True)))
        written.append(path)
        if dec is not None:
            path = out_dir / decision_result_name(mtype, mid)
            _write_rows(path, list(zip(names[sel].tolist(), dec[sel].tolist(), strict=True)))
            written.append(path)
    return written


def _num(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "nan"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}" if math.isfinite(value) else "–"


def results_markdown(rows: Sequence[ResultRow], summaries: Sequence[Summary] | None = None) -> str:
    """Readable Markdown: per scorer a table of machine types x AUC/pAUC (%) with the means, then per-ID details."""
    summaries = summarize(rows) if summaries is None else summaries
    by_scorer = {s.scorer: s for s in summaries}
    has_domains = any(math.isfinite(r.auc_source) or math.isfinite(r.auc_target) for r in rows)
    has_decisions = any(math.isfinite(r.f1) for r in rows)
    lines = ["# Results", ""]
    if not rows:
        lines.append("No test clips with known labels; nothing to evaluate.")
    for scorer in dict.fromkeys(r.scorer for r in rows):
        mine = [r for r in rows if r.scorer == scorer]
        means = [r for r in mine if r.machine_id == MEAN_ID]
        head = ["machine type", "AUC (%)", "pAUC (%)"]
        if has_domains:
            head += ["AUC source (%)", "AUC target (%)", "official (%)"]
        if has_decisions:
            head += ["false alarms (%)", "recall (%)"]
        lines += [f"## {scorer}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in means:
            cells = [r.machine_type, _pct(r.auc), _pct(r.pauc)]
            if has_domains:
                cells += [_pct(r.auc_source), _pct(r.auc_target), _pct(r.official)]
            if has_decisions:
                cells += [_pct(r.false_alarms), _pct(r.recall)]
            lines.append("| " + " | ".join(cells) + " |")
        s = by_scorer.get(scorer)
        if s is not None:
            pad = (["", "", ""] if has_domains else []) + (["", ""] if has_decisions else [])
            lines.append(
                "| **arithmetic mean** | " + " | ".join([_pct(s.auc_mean), _pct(s.pauc_mean), *pad]) + " |"
            )
            official = ([" ", " ", _pct(s.official)] if has_domains else []) + (["", ""] if has_decisions else [])
            lines.append(
                "| **harmonic mean** | "
                + " | ".join([_pct(s.auc_hmean), _pct(s.pauc_hmean), *official])
                + " |"
            )
        detail = ["machine type", "machine id", "AUC (%)", "pAUC (%)"]
        if has_domains:
            detail += ["AUC source (%)", "AUC target (%)"]
        if has_decisions:
            detail += ["false alarms (%)", "precision (%)", "recall (%)", "F1 (%)"]
        detail += ["normal", "anomalous"]
        lines += [
            "",
            f"### {scorer}: per machine ID",
            "",
            "| " + " | ".join(detail) + " |",
            "|" + "---|" * len(detail),
        ]
        for r in mine:
            if r.machine_id == MEAN_ID:
                continue
            cells = [r.machine_type, r.machine_id, _pct(r.auc), _pct(r.pauc)]
            if has_domains:
                cells += [_pct(r.auc_source), _pct(r.auc_target)]
            if has_decisions:
                cells += [_pct(r.false_alarms), _pct(r.precision), _pct(r.recall), _pct(r.f1)]
            cells += [str(r.n_normal), str(r.n_anomaly)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_results(
    rows: Sequence[ResultRow], out_dir: str | Path, summaries: Sequence[Summary] | None = None
) -> list[Path]:
    """Write ``results.csv`` (tidy: header scorer,machine_type,machine_id,auc,pauc then extras; fractions 0..1)
    and ``results.md`` into `out_dir`; returns both paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ResultRow.field_names()
    table = [names]
    for r in rows:
        d = r.as_dict()
        table.append([d[n] if isinstance(d[n], (str, int)) else _num(float(d[n])) for n in names])
    csv_path = out_dir / "results.csv"
    _write_rows(csv_path, table)
    md_path = out_dir / "results.md"
    write_text_atomic(md_path, results_markdown(rows, summaries))
    return [csv_path, md_path]
