"""Distance to the k-th nearest normal embedding of the same machine ID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssad.scoring.base import Scorer
from ssad.scoring.neighbours import HNSW_METRICS, INDEXES, build_index

__all__ = ["KNNScorer", "KNN_METRICS"]

KNN_METRICS = ("cosine", "euclidean", "manhattan", "chebyshev")


class KNNScorer(Scorer):
    """Per machine ID, the distance from an embedding to its k-th nearest normal training embedding.

    Args:
        k: which neighbour (1 = nearest). The training scores are leave-one-out (each training clip's k-th
            neighbour among the *other* clips), so an ID with no more than k clips uses a nearer neighbour.
        metric: one of `KNN_METRICS`.
        index: neighbour search: "exact" (scikit-learn), "hnsw" (faiss's graph index, approximate, for
            cosine and euclidean; a query's cost grows far slower than the references), or "auto" (exact
            below `ssad.scoring.neighbours.AUTO_HNSW_MIN_REFERENCES` references of an ID, HNSW above).

    Fitted attributes: `ids_`, `embeddings_` (training embeddings, rows grouped by id in `ids_` order),
    `offsets_` (n_ids + 1 row bounds into `embeddings_`), `train_ids_`, `train_scores_` (leave-one-out).
    """

    input_name: str = "embedding"

    def __init__(self, k: int = 1, metric: str = "cosine", index: str = "auto") -> None:
        self.k = k
        self.metric = metric
        self.index = index

    def _check_params(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k={self.k!r} must be an integer >= 1")
        if self.metric not in KNN_METRICS:
            raise ValueError(f"metric={self.metric!r} is not supported; allowed: {list(KNN_METRICS)}")
        if self.index not in INDEXES:
            raise ValueError(f"index={self.index!r} is not supported; allowed: {list(INDEXES)}")
        if self.index == "hnsw" and self.metric not in HNSW_METRICS:
            raise ValueError(f"index='hnsw' supports metric {list(HNSW_METRICS)}, not {self.metric!r}")

    def _neighbours(self, n_clips: int) -> int:
        """The neighbour an ID with `n_clips` training clips uses: `k`, or fewer so leave-one-out still works."""
        return max(1, min(int(self.k), n_clips - 1))

    def _build_index(self) -> None:
        counts = np.diff(self.offsets_)
        self._nn = [
            build_index(self.embeddings_[self.offsets_[i] : self.offsets_[i + 1]], self._neighbours(int(n)),
                        self.metric, self.index)
            for i, n in enumerate(counts)
        ]

    def fit(self, X: np.ndarray, ids: Sequence[str]) -> KNNScorer:
        """Store each ID's normal training embeddings (n, d) and index them for neighbour search.

        An ID with no more than k clips uses neighbour min(k, n - 1); one with a single clip is scored by the
        distance to it, and its training score is 0 (no leave-one-out). `fallbacks_` says so, with a warning.
        """
        self._check_params()
        X, ids, groups = self._grouped(X, ids)
        self.ids_ = list(groups)
        self.embeddings_ = np.concatenate([X[idx] for idx in groups.values()])
        self.offsets_ = np.concatenate([[0], np.cumsum([len(idx) for idx in groups.values()])])
        self.n_features_in_ = X.shape[1]
        self._build_index()
        train_scores = np.zeros(len(X))
        fallbacks = {}
        for name, nn, idx in zip(self.ids_, self._nn, groups.values(), strict=True):
            if len(idx) == 1:
                fallbacks[name] = "1 training clip: the distance to it (no leave-one-out; training score 0)"
                continue
            if len(idx) <= self.k:
                fallbacks[name] = f"{len(idx)} training clips: neighbour {self._neighbours(len(idx))} instead of k={self.k}"
            train_scores[idx] = nn.query_references()[:, -1]
        self.train_ids_ = ids
        self.train_scores_ = train_scores
        self._note_fallbacks(fallbacks)
        return self

    def score(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(n,) distance of each embedding to the k-th nearest normal embedding of its own ID."""
        X, groups = self._validated(X, ids)
        index = {name: i for i, name in enumerate(self.ids_)}
        out = np.empty(len(X))
        for name, idx in groups.items():
            out[idx] = self._nn[index[name]].query(X[idx])[:, -1]
        return out

    def _merged(self, fresh: Scorer) -> KNNScorer:
        merged = super()._merged(fresh)
        sources = {name: self for name in self.ids_} | {name: fresh for name in fresh.ids_}
        rows = [sources[name]._rows(name) for name in merged.ids_]
        merged.embeddings_ = np.concatenate(rows)
        merged.offsets_ = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        merged._build_index()
        return merged

    def _rows(self, name: str) -> np.ndarray:
        """The stored training embeddings of one ID."""
        i = self.ids_.index(name)
        return self.embeddings_[self.offsets_[i] : self.offsets_[i + 1]]

    def _empty_arrays(self, n_features: int) -> dict[str, np.ndarray]:
        return {"embeddings": np.empty((0, n_features)), "offsets": np.zeros(1, dtype=np.int64)}

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"embeddings": self.embeddings_, "offsets": self.offsets_}
        return arrays, {}

    def _set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self._check_params()
        ids = self.ids_
        embeddings = np.asarray(arrays["embeddings"], dtype=np.float64)
        offsets = np.asarray(arrays["offsets"], dtype=np.int64)
        if embeddings.ndim != 2 or offsets.shape != (len(ids) + 1,) or offsets[-1] != len(embeddings):
            raise ValueError(
                f"embeddings {embeddings.shape} / offsets {offsets.shape} do not match {len(ids)} ids"
            )
        if np.any(np.diff(offsets) < 1):
            raise ValueError("some id has no stored embeddings")
        self.embeddings_, self.offsets_ = embeddings, offsets
        self.n_features_in_ = embeddings.shape[1]
        self._build_index()
