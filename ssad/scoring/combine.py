"""Ensembles: standardise each detector's scores per machine ID on its normal training scores, then add them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ssad.core.atomic import atomic_path
from ssad.core.errors import SsadError
from ssad.scoring.base import (
    ARRAYS_FILE,
    THIN_CLIPS,
    Scorer,
    check_ids,
    check_known_ids,
    group_indices,
    read_arrays,
    select_input,
)

__all__ = ["CombinedScorer", "per_id_stats", "standardize_per_id", "combine_standardized"]

_MEMBER_DIR = "member_{}"


def _as_1d(scores: Any, name: str) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def per_id_stats(train_scores: Any, train_ids: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sorted ids, and the mean and std of the training scores of each (std floored so z-scores stay finite).

    An ID with fewer than `THIN_CLIPS` scores cannot measure its spread: it gets the median std of the others.
    """
    train_scores = _as_1d(train_scores, "train_scores")
    groups = group_indices(check_ids(train_ids, len(train_scores)))
    means = np.array([train_scores[idx].mean() for idx in groups.values()])
    stds = np.array([train_scores[idx].std() for idx in groups.values()])
    thin = np.array([len(idx) < THIN_CLIPS for idx in groups.values()])
    if thin.any() and not thin.all():
        stds[thin] = np.median(stds[~thin])
    floor = 1e-12 * np.maximum(np.abs(means), 1.0)
    return list(groups), means, np.where(stds > floor, stds, 1.0)


def _standardize(
    ids_known: list[str], means: np.ndarray, stds: np.ndarray, scores: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    uniq, inverse = np.unique(ids, return_inverse=True)
    check_known_ids(uniq.tolist(), ids_known)
    pos = np.searchsorted(ids_known, uniq)[inverse]
    return (scores - means[pos]) / stds[pos]


def standardize_per_id(
    train_scores: Any, train_ids: Sequence[str], scores: Any, ids: Sequence[str]
) -> np.ndarray:
    """z-scores of `scores` against the mean and std of the same ID's training scores, so detectors share a scale."""
    known, means, stds = per_id_stats(train_scores, train_ids)
    scores = _as_1d(scores, "scores")
    return _standardize(known, means, stds, scores, check_ids(ids, len(scores)))


def _check_weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {n: 1.0 / len(names) for n in names}
    extra = sorted(set(weights) - set(names))
    missing = sorted(set(names) - set(weights))
    if extra or missing:
        raise ValueError(
            f"weights must name exactly the members {sorted(names)}; unknown {extra}, missing {missing}"
        )
    bad = {k: v for k, v in weights.items() if not np.isfinite(v)}
    if bad:
        raise ValueError(f"weights must be finite numbers; got {bad}")
    return {n: float(weights[n]) for n in names}


def combine_standardized(
    train_scores: Mapping[str, Any],
    train_ids: Sequence[str] | Mapping[str, Sequence[str]],
    scores: Mapping[str, Any],
    ids: Sequence[str],
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Weighted sum over detectors of per-ID standardised scores (equal weights 1/M by default).

    `train_scores` and `scores` map detector name -> score arrays; `scores` must be row-aligned across
    detectors (same clips, same order, ids in `ids`). `train_ids` is one sequence shared by all detectors
    or a mapping detector name -> its own training ids.
    """
    names = list(scores)
    if not names:
        raise ValueError("scores is empty; give at least one detector")
    if set(train_scores) != set(names):
        raise ValueError(
            f"train_scores names {sorted(train_scores)} differ from scores names {sorted(names)}"
        )
    w = _check_weights(names, weights)
    total = None
    for name in names:
        tids = train_ids[name] if isinstance(train_ids, Mapping) else train_ids
        z = w[name] * standardize_per_id(train_scores[name], tids, scores[name], ids)
        if total is not None and len(z) != len(total):
            raise ValueError(f"scores[{name!r}] has {len(z)} rows, other detectors {len(total)}")
        total = z if total is None else total + z
    return total


class CombinedScorer(Scorer):
    """Ensemble of scorers: weighted sum of each member's score, standardised per ID on its training scores.

    Args:
        members: name -> scorer; each takes its own input from the dict passed to `fit`/`score`.
        weights: name -> weight for every member; None = equal weights 1/M.

    `fit` and `score` take `X` as a dict ``{input_name: array}``. Fitted attributes: `ids_`, `means_` and
    `stds_` (n_members, n_ids) of member training scores, `train_ids_`, `train_scores_`.
    """

    input_name: str = "*"

    def __init__(self, members: Mapping[str, Scorer], weights: Mapping[str, float] | None = None) -> None:
        self.members = members
        self.weights = weights

    def _check_params(self) -> dict[str, float]:
        if not isinstance(self.members, Mapping) or not self.members:
            raise ValueError("members must be a non-empty dict name -> Scorer")
        bad = {
            n: type(m).__name__
            for n, m in self.members.items()
            if not isinstance(m, Scorer) or not isinstance(n, str)
        }
        if bad:
            raise ValueError(f"members must map str names to ssad Scorers; bad entries: {bad}")
        return _check_weights(list(self.members), self.weights)

    @staticmethod
    def _check_X(X: Any) -> Mapping[str, Any]:
        if not isinstance(X, Mapping):
            raise ValueError(
                f"CombinedScorer takes X as a dict {{input_name: array}}, got {type(X).__name__}"
            )
        return X

    def fit(self, X: Mapping[str, Any], ids: Sequence[str]) -> CombinedScorer:
        """Fit every member on its input, then record per-ID mean and std of each member's training scores."""
        weights = self._check_params()
        X = self._check_X(X)
        for member in self.members.values():
            member.fit(select_input(member, X), ids)
        frozen = getattr(self, "_frozen", None)
        if frozen:  # a held-out fold's copy: scored on the full fit's scale, no training scores of its own
            self.ids_, self.means_, self.stds_ = frozen
            self.weights_ = np.array([weights[n] for n in self.members])
            self.train_ids_ = check_ids(ids, len(np.asarray(ids)))
            self.train_scores_ = np.full(len(self.train_ids_), np.nan)
            self.fallbacks_ = {}
            return self
        self._standardise(weights)
        counts = dict(zip(*np.unique(self.train_ids_, return_counts=True), strict=True))
        self.fallbacks_ = {
            str(name): f"{n} training clip(s): member scores standardised with the median spread of the other IDs"
            for name, n in counts.items() if n < THIN_CLIPS and max(counts.values()) >= THIN_CLIPS
        }
        return self

    def fit_empty(self, X: Mapping[str, Any]) -> CombinedScorer:
        """Every member fitted on no machine yet (`Scorer.fit_empty`): `refit_ids` adds machines member by member."""
        weights = self._check_params()
        X = self._check_X(X)
        for member in self.members.values():
            member.fit_empty(select_input(member, X))
        self.ids_, self.fallbacks_ = [], {}
        self.means_ = np.empty((len(self.members), 0))
        self.stds_ = np.empty((len(self.members), 0))
        self.weights_ = np.array([weights[n] for n in self.members])
        self.train_ids_, self.train_scores_ = np.array([], dtype=str), np.empty(0)
        return self

    def _standardise(self, weights: Mapping[str, float]) -> None:
        """From the fitted members: the ids, each member's per-ID mean and std of its training scores, the weights,
        and the ensemble's own training scores."""
        members = list(self.members.values())
        stats = [per_id_stats(m.train_scores_, m.train_ids_) for m in members]
        self.ids_ = stats[0][0]
        if any(s[0] != self.ids_ for s in stats):
            raise ValueError("members were fitted on different sets of ids")
        self.means_ = np.stack([s[1] for s in stats])
        self.stds_ = np.stack([s[2] for s in stats])
        self.weights_ = np.array([weights[n] for n in self.members])
        self.train_ids_ = np.asarray(members[0].train_ids_, dtype=str)
        self.train_scores_ = self._combine([m.train_scores_ for m in members], self.train_ids_)

    def _combine(self, member_scores: Sequence[np.ndarray], ids: np.ndarray) -> np.ndarray:
        total = np.zeros(len(ids))
        for j, s in enumerate(member_scores):
            total += self.weights_[j] * _standardize(self.ids_, self.means_[j], self.stds_[j], s, ids)
        return total

    def score(self, X: Mapping[str, Any], ids: Sequence[str]) -> np.ndarray:
        """(n,) weighted sum of the members' per-ID standardised scores."""
        check_is_fitted(self)
        X = self._check_X(X)
        scores = [m.score(select_input(m, X), ids) for m in self.members.values()]
        ids = check_ids(ids, len(scores[0]))
        check_known_ids(set(ids.tolist()), self.ids_)
        return self._combine(scores, ids)

    def fold_copy(self) -> CombinedScorer:
        """An unfitted copy for held-out folds: its members' fold copies, standardised as this fit standardised."""
        copy = CombinedScorer({name: m.fold_copy() for name, m in self.members.items()}, self.weights)
        copy._frozen = (list(self.ids_), self.means_, self.stds_)
        return copy

    def refit_ids(self, X: Mapping[str, Any], ids: Sequence[str]) -> CombinedScorer:
        """A copy with the IDs in `ids` refitted in every member and standardised anew; other IDs unchanged."""
        check_is_fitted(self)
        X = self._check_X(X)
        members = {name: m.refit_ids(select_input(m, X), ids) for name, m in self.members.items()}
        merged = CombinedScorer(members, self.weights)
        merged._standardise(merged._check_params())
        merged.fallbacks_ = {k: v for m in members.values() for k, v in getattr(m, "fallbacks_", {}).items()}
        return merged

    def _merged(self, fresh: Scorer) -> Scorer:
        raise SsadError("an ensemble refits machines through refit_ids, member by member")

    def save(self, directory: str | Path) -> Path:
        """Write `scorer.json` + `arrays.npz` and each member into `member_<i>/` (no pickle)."""
        check_is_fitted(self)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for i, member in enumerate(self.members.values()):
            member.save(directory / _MEMBER_DIR.format(i))
        common_arrays, common_meta = self._common_state()
        with atomic_path(directory / ARRAYS_FILE) as tmp:
            np.savez(tmp, means=self.means_, stds=self.stds_, **common_arrays)
        meta = {**common_meta, "members": list(self.members)}
        params = {"weights": None if self.weights is None else dict(self.weights)}
        self._write_json(directory, meta, params)
        return directory

    @classmethod
    def _from_saved(cls, directory: Path, params: dict[str, Any], state: dict[str, Any]) -> CombinedScorer:
        names = state.get("members")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SsadError(f"{directory}: 'state.members' must be a list of member names")
        members = {name: Scorer.load(directory / _MEMBER_DIR.format(i)) for i, name in enumerate(names)}
        weights = params.get("weights")
        if weights is not None and not isinstance(weights, dict):
            raise SsadError(f"{directory}: 'params.weights' must be an object or null")
        scorer = cls(members=members, weights=weights)
        arrays = read_arrays(directory / ARRAYS_FILE)
        try:
            w = scorer._check_params()
            scorer._restore_common(arrays, state)
            ids = scorer.ids_
            means, stds = np.asarray(arrays["means"], float), np.asarray(arrays["stds"], float)
            if means.shape != (len(names), len(ids)) or stds.shape != means.shape:
                raise ValueError(
                    f"means/stds shape {means.shape} does not match {len(names)} members x {len(ids)} ids"
                )
            scorer.means_, scorer.stds_ = means, stds
            scorer.weights_ = np.array([w[n] for n in names])
        except (KeyError, ValueError, TypeError) as err:
            raise SsadError(f"{directory}: saved CombinedScorer state is inconsistent: {err!r}") from None
        return scorer
