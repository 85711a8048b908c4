"""Evaluation: score tables, DCASE AUC/pAUC, the challenge's files, reports, plots, and the evaluation run (`run`).

Decision thresholds (`AlarmThreshold`) live in `ssad.scoring.thresholds`, beside the scores they decide on.
"""

from __future__ import annotations

from ssad.evaluation.files import (
    RESULTS_HEADER,
    anomaly_score_name,
    decision_result_name,
    results_markdown,
    write_challenge_files,
    write_results,
)
from ssad.evaluation.metrics import (
    MEAN_ID,
    ResultRow,
    Summary,
    auc_pauc,
    binary_labels,
    decision_metrics,
    evaluate,
    harmonic_mean,
    summarize,
)
from ssad.evaluation.plots import plot_histograms, plot_roc, plot_tsne_pair
from ssad.evaluation.report import write_evaluation
from ssad.evaluation.table import COLUMNS, ScoreTable, ensemble_tables, machine_key
from ssad.scoring.thresholds import AlarmThreshold, load_thresholds, save_thresholds

__all__ = [
    "ScoreTable",
    "COLUMNS",
    "machine_key",
    "ensemble_tables",
    "ResultRow",
    "Summary",
    "MEAN_ID",
    "auc_pauc",
    "binary_labels",
    "harmonic_mean",
    "evaluate",
    "summarize",
    "decision_metrics",
    "AlarmThreshold",
    "RESULTS_HEADER",
    "anomaly_score_name",
    "decision_result_name",
    "write_challenge_files",
    "write_results",
    "results_markdown",
    "plot_roc",
    "plot_histograms",
    "plot_tsne_pair",
    "write_evaluation",
    "save_thresholds",
    "load_thresholds",
]
