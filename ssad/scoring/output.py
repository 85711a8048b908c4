"""Pass-through for models that score clips themselves (Group MADE's NLL, the autoencoder's reconstruction error)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_array, check_is_fitted

from ssad.scoring.base import Scorer, check_ids, check_known_ids

__all__ = ["OutputScorer"]


def _as_scores(X: Any) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"OutputScorer takes one score per clip, shape (n,) or (n, 1); got {arr.shape}")
    return check_array(arr[:, None], dtype=np.float64)[:, 0]


class OutputScorer(Scorer):
    """Score = the model's own per-clip score, unchanged.

    Args:
        input_name: which model output holds the score, e.g. ``"anomaly_score"``.
    """

    def __init__(self, input_name: str = "anomaly_score") -> None:
        self.input_name = input_name

    def fit(self, X: np.ndarray, ids: Sequence[str]) -> OutputScorer:
        """Record the ids seen and the training clips' scores."""
        if not isinstance(self.input_name, str) or not self.input_name:
            raise ValueError(f"input_name={self.input_name!r} must be a non-empty string")
        scores = _as_scores(X)
        ids = check_ids(ids, len(scores))
        self.ids_ = sorted(set(ids.tolist()))
        self.train_ids_ = ids
        self.train_scores_ = scores
        return self

    def score(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(n,) the given scores, after checking the ids were seen in fit."""
        check_is_fitted(self)
        scores = _as_scores(X)
        ids = check_ids(ids, len(scores))
        check_known_ids(set(ids.tolist()), self.ids_)
        return scores.copy()
