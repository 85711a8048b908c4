"""AUC and pAUC per machine ID as the DCASE Task 2 baselines compute them, and their means across machine types."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from ssad.evaluation.table import ScoreTable

__all__ = [
    "ResultRow",
    "Summary",
    "auc_pauc",
    "binary_labels",
    "harmonic_mean",
    "evaluate",
    "summarize",
    "decision_metrics",
    "MEAN_ID",
]

logger = logging.getLogger(__name__)

#: `machine_id` of the row holding the mean over a machine type's IDs.
MEAN_ID = "mean"
_NAN = float("nan")


def binary_labels(labels: Any) -> np.ndarray:
    """1 for anomalous, 0 for normal; accepts 0/1 or the strings ``anomaly``/``normal``."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "USO":
        arr = arr.astype(str)
        bad = sorted(set(arr.tolist()) - {"normal", "anomaly"})
        if bad:
            raise ValueError(f"labels {bad} are not allowed; allowed: ['normal', 'anomaly'] or 0/1")
        return (arr == "anomaly").astype(np.int64)
    bad = sorted(set(np.unique(arr).tolist()) - {0, 1})
    if bad:
        raise ValueError(f"labels {bad} are not allowed; allowed: 0 (normal), 1 (anomaly)")
    return arr.astype(np.int64)


def auc_pauc(labels: Any, scores: Any, max_fpr: float = 0.1) -> tuple[float, float]:
    """(AUC, pAUC) as the DCASE 2020 baseline: sklearn's `roc_auc_score`, pAUC McClish-standardised up to `max_fpr`."""
    y = binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-D of equal length")
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr={max_fpr!r} must be in (0, 1]")
    if len(np.unique(y)) < 2:
        raise ValueError("AUC needs both normal and anomalous clips; only one class is present")
    return float(roc_auc_score(y, s)), float(roc_auc_score(y, s, max_fpr=max_fpr))


def harmonic_mean(values: Iterable[float]) -> float:
    """Harmonic mean of the finite values (0 if any is 0 or below, NaN if none), as the DCASE official scores use."""
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return _NAN
    if np.any(arr <= 0):
        return 0.0
    return float(arr.size / np.sum(1.0 / arr))


def _mean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else _NAN


def decision_metrics(labels: Any, decisions: Any) -> tuple[float, float, float]:
    """(precision, recall, F1) of binary decisions (1 = anomalous) against the labels; 0 where undefined."""
    y = binary_labels(labels)
    d = binary_labels(np.asarray(decisions).astype(np.int64))
    p, r, f, _ = precision_recall_fscore_support(y, d, average="binary", pos_label=1, zero_division=0)
    return float(p), float(r), float(f)


@dataclass
class ResultRow:
    """Metrics of one scorer on one machine ID, or (``machine_id == "mean"``) averaged over a type's IDs.

    `auc`/`pauc` use all labelled test clips of the ID. With domains (DCASE 2022+): `auc_source` uses source
    normal clips and all anomalous clips, `auc_target` likewise for target, and `official` is the harmonic
    mean of AUC (source), AUC (target) and pAUC (over all of a type's sections in the mean row).
    Precision/recall/F1 are those of the thresholded decisions, when given, and `false_alarms` the share of the
    normal test clips they flag (what a threshold's false-alarm rate promises).
    """

    scorer: str
    machine_type: str
    machine_id: str
    auc: float
    pauc: float
    auc_source: float = _NAN
    auc_target: float = _NAN
    official: float = _NAN
    precision: float = _NAN
    recall: float = _NAN
    f1: float = _NAN
    n_normal: int = 0
    n_anomaly: int = 0
    false_alarms: float = _NAN

    @classmethod
    def field_names(cls) -> list[str]:
        """Column names in order: scorer, machine_type, machine_id, auc, pauc, then the extras."""
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict."""
        return asdict(self)


@dataclass
class Summary:
    """One scorer across machine types: arithmetic and harmonic means of the per-type mean AUC and pAUC.

    `official` (domains only) is the harmonic mean of the types' official scores.
    """

    scorer: str
    n_types: int
    auc_mean: float
    pauc_mean: float
    auc_hmean: float
    pauc_hmean: float
    official: float = _NAN

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain dict."""
        return asdict(self)


def _domain_auc(y: np.ndarray, s: np.ndarray, in_domain: np.ndarray) -> float:
    keep = in_domain | (y == 1)
    if not np.any(in_domain & (y == 0)) or not np.any(y[keep] == 1):
        return _NAN
    return float(roc_auc_score(y[keep], s[keep]))


def evaluate(table: ScoreTable, decisions: Any = None, max_fpr: float = 0.1) -> list[ResultRow]:
    """Per (scorer, machine type, machine ID) AUC/pAUC on labelled test clips, plus a ``mean`` row per type.

    `decisions` (optional) holds a 0/1 decision per row of `table`, for precision/recall/F1.
    IDs whose labelled test clips are all of one class are skipped with a logged warning.
    """
    mask = (table.split == "test") & np.isin(table.label, ["normal", "anomaly"])
    if decisions is not None:
        decisions = np.asarray(decisions)
        if decisions.shape != (len(table),):
            raise ValueError(
                f"decisions has shape {decisions.shape}; expected one per table row ({len(table)},)"
            )
        decisions = decisions[mask]
    test = table.take(mask)
    has_domains = bool(np.any(test.domain != "source"))
    y_all = binary_labels(test.label) if len(test) else np.array([], dtype=np.int64)
    rows: list[ResultRow] = []
    for scorer in test.scorers:
        for mtype in sorted(set(test.machine_type[test.scorer == scorer].tolist())):
            id_rows: list[ResultRow] = []
            section_values: list[float] = []
            sel_type = (test.scorer == scorer) & (test.machine_type == mtype)
            for mid in sorted(set(test.machine_id[sel_type].tolist())):
                sel = sel_type & (test.machine_id == mid)
                y, s = y_all[sel], test.score[sel]
                if len(np.unique(y)) < 2:
                    logger.warning(
                        "skipping %s %s/%s: its labelled test clips are all %s",
                        scorer,
                        mtype,
                        mid,
                        "anomalous" if y[0] else "normal",
                    )
                    continue
                auc, pauc = auc_pauc(y, s, max_fpr)
                row = ResultRow(
                    scorer, mtype, mid, auc, pauc, n_normal=int(np.sum(y == 0)), n_anomaly=int(np.sum(y == 1))
                )
                if has_domains:
                    domain = test.domain[sel]
                    row.auc_source = _domain_auc(y, s, domain == "source")
                    row.auc_target = _domain_auc(y, s, domain == "target")
                    values = [row.auc_source, row.auc_target, row.pauc]
                    if not all(math.isfinite(v) for v in values):
                        logger.warning(
                            "%s %s/%s lacks normal source or target clips; its official score is partial",
                            scorer,
                            mtype,
                            mid,
                        )
                    row.official = harmonic_mean(values)
                    section_values += values
                if decisions is not None:
                    row.precision, row.recall, row.f1 = decision_metrics(y, decisions[sel])
                    row.false_alarms = float(np.mean(decisions[sel][y == 0]))
                id_rows.append(row)
            if not id_rows:
                continue
            mean = ResultRow(
                scorer,
                mtype,
                MEAN_ID,
                auc=_mean(r.auc for r in id_rows),
                pauc=_mean(r.pauc for r in id_rows),
                auc_source=_mean(r.auc_source for r in id_rows),
                auc_target=_mean(r.auc_target for r in id_rows),
                official=harmonic_mean(section_values) if has_domains else _NAN,
                precision=_mean(r.precision for r in id_rows),
                recall=_mean(r.recall for r in id_rows),
                f1=_mean(r.f1 for r in id_rows),
                false_alarms=_mean(r.false_alarms for r in id_rows),
                n_normal=sum(r.n_normal for r in id_rows),
                n_anomaly=sum(r.n_anomaly for r in id_rows),
            )
            rows += [*id_rows, mean]
    return rows


def summarize(rows: Sequence[ResultRow]) -> list[Summary]:
    """Per scorer, arithmetic and harmonic means across machine types of the per-type mean AUC and pAUC."""
    out = []
    for scorer in dict.fromkeys(r.scorer for r in rows):
        means = [r for r in rows if r.scorer == scorer and r.machine_id == MEAN_ID]
        if not means:
            continue
        out.append(
            Summary(
                scorer=scorer,
                n_types=len(means),
                auc_mean=_mean(r.auc for r in means),
                pauc_mean=_mean(r.pauc for r in means),
                auc_hmean=harmonic_mean(r.auc for r in means),
                pauc_hmean=harmonic_mean(r.pauc for r in means),
                official=harmonic_mean(r.official for r in means),
            )
        )
    return out
