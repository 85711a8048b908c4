"""Anomaly scorers: turn per-clip model outputs (embeddings, class log-probabilities, own scores) into anomaly scores."""

from __future__ import annotations

from typing import Any

from ssad.scoring.base import Scorer, check_ids, registered_scorers, select_input
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
    "select_input",
    "check_ids",
    "registered_scorers",
    "per_id_stats",
    "standardize_per_id",
    "combine_standardized",
]

#: short name -> scorer class, for configs and the CLI.
SCORERS: dict[str, type[Scorer]] = {
    "gaussian": GaussianScorer,
    "floor": SpectrumScorer,
    "knn": KNNScorer,
    "softmax": SoftmaxScorer,
    "output": OutputScorer,
    "combined": CombinedScorer,
}


def make_scorer(kind: str, **params: Any) -> Scorer:
    """Build a scorer by its short name (see `SCORERS`), so configs can name detectors as strings."""
    if kind not in SCORERS:
        raise ValueError(f"unknown scorer kind {kind!r}; allowed: {sorted(SCORERS)}")
    try:
        return SCORERS[kind](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters {sorted(params)} for scorer {kind!r}: {err}") from None
