"""Nearest-neighbour search for the kNN scorer: exact (scikit-learn) or a graph index (faiss HNSW) for large sets.

An exact query costs time in proportion to the references; a Hierarchical Navigable Small World graph
(Malkov & Yashunin 2018) visits a roughly logarithmic share of them, at the price of now and then
missing a true neighbour (its recall is measured in experiments/results/bench.md).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

__all__ = ["INDEXES", "HNSW_METRICS", "AUTO_HNSW_MIN_REFERENCES", "NeighbourIndex", "build_index"]

#: accepted values of `KNNScorer(index=...)`
INDEXES = ("auto", "exact", "hnsw")
#: metrics the HNSW index supports (cosine as inner product of unit vectors)
HNSW_METRICS = ("cosine", "euclidean")
#: "auto" switches to HNSW from this many references of one ID: below it an exact query is cheap (bench.md)
AUTO_HNSW_MIN_REFERENCES = 20_000
#: HNSW graph degree, construction and search breadth: faiss's defaults (recall 0.99+ at 100k references, bench.md)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 16


class NeighbourIndex:
    """Distances from queries to their `n_neighbors` nearest references, nearest first."""

    def query(self, X: np.ndarray) -> np.ndarray:
        """(n, n_neighbors) distances from each row of X to its nearest references."""
        raise NotImplementedError

    def query_references(self) -> np.ndarray:
        """(n_references, n_neighbors) distances of each reference to its nearest *other* references."""
        raise NotImplementedError


class _ExactIndex(NeighbourIndex):
    def __init__(self, references: np.ndarray, n_neighbors: int, metric: str) -> None:
        self._nn = NearestNeighbors(n_neighbors=n_neighbors, metric=metric).fit(references)

    def query(self, X: np.ndarray) -> np.ndarray:
        return self._nn.kneighbors(X)[0]

    def query_references(self) -> np.ndarray:
        return self._nn.kneighbors()[0]  # without X, each reference is left out of its own neighbours


class _HnswIndex(NeighbourIndex):
    def __init__(self, references: np.ndarray, n_neighbors: int, metric: str) -> None:
        import faiss

        from ssad.core.runtime import current_threads

        faiss.omp_set_num_threads(current_threads())
        self.metric = metric
        self.n_neighbors = n_neighbors
        points = self._prepare(references)
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        self._index = faiss.IndexHNSWFlat(points.shape[1], HNSW_M, faiss_metric)
        self._index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self._index.hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * (n_neighbors + 1))
        self._index.add(points)
        self._references = points

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        points = np.ascontiguousarray(X, dtype=np.float32)
        if self.metric == "cosine":
            norms = np.linalg.norm(points, axis=1, keepdims=True)
            points = points / np.where(norms > 0, norms, 1.0)
        return points

    def _distances(self, raw: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            return np.clip(1.0 - raw.astype(np.float64), 0.0, 2.0)
        return np.sqrt(np.maximum(raw.astype(np.float64), 0.0))  # faiss gives squared L2

    def query(self, X: np.ndarray) -> np.ndarray:
        raw, _ = self._index.search(self._prepare(X), self.n_neighbors)
        return self._distances(raw)

    def query_references(self) -> np.ndarray:
        raw, labels = self._index.search(self._references, self.n_neighbors + 1)
        # drop each reference's own entry (first among equals may be a duplicate: then drop the last)
        is_self = labels == np.arange(len(labels))[:, None]
        keep = np.argsort(is_self, axis=1, kind="stable")[:, : self.n_neighbors]
        return self._distances(np.take_along_axis(raw, keep, axis=1))


def build_index(references: np.ndarray, n_neighbors: int, metric: str, index: str = "auto") -> NeighbourIndex:
    """An index over `references` answering `n_neighbors`-nearest queries: "exact", "hnsw", or "auto".

    "auto" is exact below `AUTO_HNSW_MIN_REFERENCES` references (or for a metric HNSW lacks), HNSW above.
    """
    if index not in INDEXES:
        raise ValueError(f"index={index!r} is not supported; allowed: {list(INDEXES)}")
    if index == "hnsw" and metric not in HNSW_METRICS:
        raise ValueError(f"index='hnsw' supports metric {list(HNSW_METRICS)}, not {metric!r}")
    use_hnsw = index == "hnsw" or (
        index == "auto" and metric in HNSW_METRICS and len(references) >= AUTO_HNSW_MIN_REFERENCES
    )
    # HNSW needs a neighbour besides the point itself; a one-point set is exact anyway
    if use_hnsw and len(references) > n_neighbors:
        return _HnswIndex(references, n_neighbors, metric)
    return _ExactIndex(references, n_neighbors, metric)
