"""Anomaly scorers: turn per-clip model outputs (embeddings, class log-probabilities, own scores) into anomaly scores."""

from __future__ import annotations

from ssad.scoring.base import Scorer, check_ids, registered_scorers, select_input
from ssad.scoring.catalogue import SCORERS, make_scorer, offered_scorers, register_scorer
from ssad.scoring.combine import CombinedScorer, combine_standardized, per_id_stats, standardize_per_id
from ssad.scoring.gaussian import GaussianScorer, SpectrumScorer
from ssad.scoring.knn import KNNScorer
from ssad.scoring.output import OutputScorer
from ssad.scoring.softmax import SoftmaxScorer

__all__ = [
    "Scorer",
    "GaussianScorer",
    "SpectrumScorer",
    "KNNScorer",
    "SoftmaxScorer",
    "OutputScorer",
    "CombinedScorer",
    "SCORERS",
    "make_scorer",
    "offered_scorers",
    "register_scorer",
    "select_input",
    "check_ids",
    "registered_scorers",
    "per_id_stats",
    "standardize_per_id",
    "combine_standardized",
]
