"""The classifier's own surprise: -log p(true machine ID), averaged over a clip's windows by the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.utils.validation import check_array, check_is_fitted

from ssad.audio.clips import machine_of_class
from ssad.core.errors import SsadError
from ssad.scoring.base import Scorer, check_ids, check_known_ids

__all__ = ["SoftmaxScorer"]


class SoftmaxScorer(Scorer):
    """Score = the clip's mean -log p(class) in the column of its own machine ID.

    A machine trained as several attribute classes (``"fan/section_00|speed=1200"``, ...) scores
    -log of the summed probability of its classes, each class's probability taken from its mean -log p.

    Args:
        class_names: the classifier's output classes in column order, the same strings as the ids
            (e.g. ``"fan/id_00"``) or a machine's attribute classes.

    `fit` learns nothing; it checks shapes and records `ids_` and `train_scores_`.
    """

    input_name: str = "neg_log_prob"

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = class_names

    def _columns(self) -> dict[str, list[int]]:
        """Each machine's columns: its class, or its attribute classes."""
        names = [str(c) for c in self.class_names]
        if not names:
            raise ValueError("class_names is empty; give the classifier's classes in column order")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"class_names has duplicates: {dup}")
        columns: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            columns.setdefault(machine_of_class(name), []).append(i)
        return columns

    def _pick(self, X: np.ndarray, ids: np.ndarray, columns: Mapping[str, list[int]]) -> np.ndarray:
        if X.shape[1] != len(self.class_names):
            raise ValueError(f"X has {X.shape[1]} columns but class_names lists {len(self.class_names)} classes")
        uniq = np.unique(ids)
        missing = [u for u in uniq if u not in columns]
        if missing:
            raise ValueError(f"id(s) {missing} are not among class_names {sorted(columns)}")
        out = np.empty(len(X))
        for machine in uniq:
            rows = ids == machine
            out[rows] = -logsumexp(-X[np.ix_(rows, columns[machine])], axis=1)
        return out

    def fit(self, X: np.ndarray, ids: Sequence[str]) -> SoftmaxScorer:
        """Check that X (n, n_classes) matches `class_names` and record the ids seen."""
        columns = self._columns()
        X = check_array(X, dtype=np.float64)
        ids = check_ids(ids, len(X))
        self.train_scores_ = self._pick(X, ids, columns)
        self.ids_ = sorted(set(ids.tolist()))
        self.train_ids_ = ids
        return self

    def score(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(n,) -log p(own id) of each clip."""
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64)
        ids = check_ids(ids, len(X))
        check_known_ids(set(ids.tolist()), self.ids_)
        return self._pick(X, ids, self._columns())

    def supports_id(self, name: str) -> bool:
        """Only the classifier's own classes have a column to read."""
        return name in self._columns()

    def _empty_arrays(self, n_features: int) -> dict[str, np.ndarray]:
        raise SsadError("it scores only the classes the model was trained on, and a machine enrolled later is none "
                        "of them")

    def _set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self._columns()
        self.class_names = [str(c) for c in self.class_names]
