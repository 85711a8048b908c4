"""Mahalanobis distance to a per-ID Gaussian of normal embeddings, with shrinkage so few clips in many dimensions stay well-conditioned."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from scipy.linalg import pinvh
from sklearn.covariance import LedoitWolf
from sklearn.metrics import calinski_harabasz_score

from ssad.audio.clips import machine_type_of
from ssad.scoring.base import THIN_CLIPS, Scorer

__all__ = ["COMPONENTS_WHEN", "COVARIANCES", "GaussianScorer", "SHRINKAGES", "SpectrumScorer", "file_order_drift"]

log = logging.getLogger("ssad")

SHRINKAGES = ("ledoit_wolf", "empirical")
#: whose clips a machine ID's covariance is estimated from: its own, every ID of its machine type, or per type
#: whichever of the two better predicts held-out normal clips
COVARIANCES = ("per_id", "type", "auto")
#: folds of the held-out likelihood that ``covariance="auto"`` compares, and the fewest clips every ID of a type
#: needs for the comparison (fewer: the type keeps its per-ID covariances)
CHOICE_FOLDS = 5
CHOICE_MIN_CLIPS = 2 * CHOICE_FOLDS
#: when `components` applies to a machine with enough clips: always, or only when its normal clips drift along
#: their file order (recording sessions, operating conditions), measured by `file_order_drift`
COMPONENTS_WHEN = ("always", "drifting")
#: contiguous blocks of a machine's clips in file order that `file_order_drift` compares, and the drift from which
#: its normal sound counts as wandering: clips in random order give about 1 (0.7-1.7 measured on steady synthetic
#: machines), the lathe's and the VMC's recordings 15-61
DRIFT_BLOCKS = 8
DRIFT_MIN = 4.0
#: IDs with up to this many clips get exact leave-one-out training scores; larger ones are cross-fitted
LEAVE_ONE_OUT_MAX_CLIPS = 200
#: folds of the cross-fitting (each clip scored by a Gaussian fitted on the other 95 % of its ID's clips)
CROSS_FIT_FOLDS = 20


def _held_out(X: np.ndarray, fit: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each row's Mahalanobis distance to the Gaussian `fit` makes of the other rows (mean, precision).

    Rows are left out one at a time, or for more than `LEAVE_ONE_OUT_MAX_CLIPS` rows in `CROSS_FIT_FOLDS` folds,
    so that the cost is a fixed number of fits rather than one per row.
    """
    out = np.empty(len(X))
    folds = len(X) if len(X) <= LEAVE_ONE_OUT_MAX_CLIPS else CROSS_FIT_FOLDS
    fold_of = np.arange(len(X)) % folds
    for fold in range(folds):
        held = fold_of == fold
        mean, precision = fit(X[~held])
        diff = X[held] - mean
        out[held] = np.sqrt(np.maximum(np.einsum("ij,ij->i", diff @ precision, diff), 0.0))
    return out


class GaussianScorer(Scorer):
    """Per machine ID, the Mahalanobis distance of an embedding to the mean of that ID's normal embeddings.

    Args:
        shrinkage: ``"ledoit_wolf"`` (sklearn's `LedoitWolf`, the default) or ``"empirical"`` (sample
            covariance plus `ridge` times its mean variance on the diagonal).
        ridge: relative ridge added for ``"empirical"``.
        covariance: ``"per_id"`` (each ID's own covariance) or ``"type"`` (each ID's own mean, and the
            covariance of the deviations from their own means pooled over the IDs of its machine type, the part
            of a "type/id" name before the slash: four IDs of 27 clips estimate 64 dimensions far better than one),
            or ``"auto"``: per machine type, whichever of the two gives the type's normal training clips the higher
            likelihood when each is held out in turn (`CHOICE_FOLDS` folds), a choice made from normal clips only.
        components: for a covariance estimated from at least as many clips as the embedding has dimensions, keep
            only its `components` leading principal directions (the distance within them; None = all). With
            that many clips the shrinkage barely acts, and the faintest directions of the normal clips weigh
            most in a Mahalanobis distance: on machines whose normal sound wanders they hold more recording noise
            than fault (lathe / VMC +4 / +2 AUC with 32), on steady ones the faults (synthetic: -3).
        components_when: ``"always"``, or ``"drifting"``: only for a machine whose normal clips, in file order,
            drift (`file_order_drift` >= `DRIFT_MIN`), the sign of a sound that wanders between recordings; a
            steady machine keeps every direction. Chosen from normal clips only; `leading_by_id_` records it.

    Fitted attributes: `ids_` (sorted ids), `means_` (n_ids, d), `precisions_` (n_ids, d, d), `covariance_by_type_`
    (machine type -> "per_id" or "type", with the held-out mean negative log-likelihood of each when compared),
    `train_ids_` and `train_scores_` (leave-one-out distances of the training clips; in-sample for IDs of
    `THIN_CLIPS` clips or fewer), `leading_by_id_` (for each ID with as many clips as dimensions under
    `components`: its file-order drift and the directions kept, None = all).
    """

    input_name: str = "embedding"

    def __init__(self, shrinkage: str = "ledoit_wolf", ridge: float = 1e-3, covariance: str = "per_id",
                 components: int | None = None, components_when: str = "always") -> None:
        self.shrinkage = shrinkage
        self.ridge = ridge
        self.covariance = covariance
        self.components = components
        self.components_when = components_when

    def _check_params(self) -> None:
        if self.shrinkage not in SHRINKAGES:
            raise ValueError(f"shrinkage={self.shrinkage!r} is not supported; allowed: {list(SHRINKAGES)}")
        if not (np.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge={self.ridge!r} must be a finite number >= 0")
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance={self.covariance!r} is not supported; allowed: {list(COVARIANCES)}")
        if self.components is not None and not (isinstance(self.components, int) and self.components >= 1):
            raise ValueError(f"components={self.components!r} must be None or an integer >= 1")
        if self.components_when not in COMPONENTS_WHEN:
            raise ValueError(f"components_when={self.components_when!r} is not supported; allowed: {list(COMPONENTS_WHEN)}")

    def _fits_leading(self, X: np.ndarray) -> bool:
        """Whether `components` applies to a covariance of these rows (in file order): set, as many clips as
        dimensions, and for ``components_when="drifting"`` rows that drift."""
        if self.components is None or len(X) < X.shape[1]:
            return False
        return self.components_when == "always" or file_order_drift(X) >= DRIFT_MIN

    def _leading(self, X: np.ndarray) -> int | None:
        """How many leading principal directions a Gaussian of these rows keeps: `components` where it applies
        and is fewer than the dimensions, else None (every direction)."""
        return self.components if self._fits_leading(X) and self.components < X.shape[1] else None

    def _leading_record(self, groups: Mapping[str, np.ndarray], X: np.ndarray) -> dict[str, dict[str, Any]]:
        """Per ID that `components` could apply to: its file-order drift and the directions its Gaussian keeps."""
        if self.components is None:
            return {}
        out = {}
        for name, idx in groups.items():
            if len(idx) >= X.shape[1]:
                kept = self._leading(X[idx])
                out[name] = {"drift": round(file_order_drift(X[idx]), 2), "components": kept}
                log.info("GaussianScorer: %s: file-order drift %.1f: %s", name, out[name]["drift"],
                         "every direction" if kept is None else f"the {kept} leading directions")
        return out

    def _mean_precision(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._mean_precision_within(X, self._leading(X))

    def _mean_precision_within(self, X: np.ndarray, leading: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and precision of these rows within their `leading` principal directions (None: every direction)."""
        if leading is None:
            return self._full_mean_precision(X)
        mean = X.mean(axis=0)
        basis = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, ::-1][:, :leading]  # leading directions
        inner = self._full_mean_precision((X - mean) @ basis)[1]
        return mean, basis @ inner @ basis.T

    def _full_mean_precision(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.shrinkage == "ledoit_wolf":
            est = LedoitWolf(store_precision=True).fit(X)
            return est.location_, est.precision_
        mean = X.mean(axis=0)
        cov = np.atleast_2d(np.cov(X, rowvar=False))
        scale = max(float(np.trace(cov)) / cov.shape[0], np.finfo(float).tiny)
        cov[np.diag_indices_from(cov)] += self.ridge * scale
        return mean, pinvh(cov)

    def fit(self, X: np.ndarray, ids: Sequence[str]) -> GaussianScorer:
        """Estimate each ID's mean and precision from its normal training embeddings (n, d).

        An ID with fewer than `THIN_CLIPS` clips gets its clips' mean and the covariance pooled over every
        ID's deviations from its own mean (`fallbacks_` says so, with a warning naming the ID).
        """
        self._check_params()
        X, ids, groups = self._grouped(X, ids)
        frozen = getattr(self, "_frozen", None)  # a held-out fold's copy keeps the full fit's choices
        self.covariance_by_type_ = frozen[0] if frozen else self._choose_covariances(X, groups)
        pooled_by_type = {n: idx for n, idx in groups.items()
                          if self.covariance_by_type_[machine_type_of(n)]["covariance"] == "type"}
        own = {n: idx for n, idx in groups.items() if n not in pooled_by_type}
        precision_of, notes = self._type_precisions(X, pooled_by_type)
        mean_of = {n: X[idx].mean(axis=0) for n, idx in pooled_by_type.items()}
        thin = [name for name, idx in own.items() if len(idx) < THIN_CLIPS]
        pooled = self._pooled(X, groups) if thin else None
        # each ID's directions are chosen once, from all its clips, so its held-out folds are fitted alike
        self.leading_by_id_ = ({n: r for n, r in frozen[1].items() if n in own and n not in thin} if frozen else
                               self._leading_record({n: idx for n, idx in own.items() if n not in thin}, X))
        leading = {name: record["components"] for name, record in self.leading_by_id_.items()}
        for name, idx in own.items():
            mean_of[name], precision_of[name] = ((X[idx].mean(axis=0), pooled[0]) if name in thin
                                                 else self._mean_precision_within(X[idx], leading.get(name)))
            if name in thin:
                notes[name] = _thin_note(len(idx), pooled[1])
        self.ids_ = list(groups)
        self.means_ = np.stack([mean_of[n] for n in groups])
        self.precisions_ = np.stack([precision_of[n] for n in groups])
        self.n_features_in_ = X.shape[1]
        self.train_ids_ = ids
        if frozen:  # a held-out fold's copy only scores the clips held out of it
            self.train_scores_ = np.full(len(X), np.nan)
            self._note_fallbacks(notes)
            return self
        self.train_scores_ = self._held_out_distances(X, own, thin, leading) if own else np.empty(len(X))
        for names in _by_type(pooled_by_type).values():
            for name, scores in self._held_out_pooled(X, {n: pooled_by_type[n] for n in names}).items():
                self.train_scores_[pooled_by_type[name]] = scores
        self._note_fallbacks(notes)
        return self

    def fold_copy(self) -> GaussianScorer:
        """An unfitted copy for held-out folds: the covariance and leading directions chosen as this fit chose them
        (a fold decides nothing anew), and no training scores of its own."""
        copy = super().fold_copy()
        copy._frozen = (dict(self.covariance_by_type_), dict(getattr(self, "leading_by_id_", {})))
        return copy

    def _choose_covariances(self, X: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """Per machine type, which covariance its IDs get (`covariance`), and for "auto" the held-out likelihoods.

        "auto" compares the two only where the type has two IDs or more, each of `CHOICE_MIN_CLIPS` clips or more:
        with one ID the two are the same estimate, and with fewer clips the held-out folds are too small to judge.
        """
        out: dict[str, dict[str, Any]] = {}
        for machine_type, names in _by_type(groups).items():
            if self.covariance != "auto":
                out[machine_type] = {"covariance": self.covariance}
                continue
            sizes = [len(groups[n]) for n in names]
            if len(names) < 2 or min(sizes) < CHOICE_MIN_CLIPS:
                out[machine_type] = {"covariance": "per_id", "why": "one ID" if len(names) < 2 else
                                     f"an ID of {min(sizes)} clips (< {CHOICE_MIN_CLIPS} to compare)"}
                continue
            nll = self._held_out_nll(X, [groups[n] for n in names])
            choice = min(nll, key=nll.get)
            out[machine_type] = {"covariance": choice, **{f"nll_{k}": round(v, 3) for k, v in nll.items()}}
            log.info("GaussianScorer: %s: %s covariance (held-out normal NLL per_id %.1f, type %.1f)",
                     machine_type, choice, nll["per_id"], nll["type"])
        return out

    def _held_out_nll(self, X: np.ndarray, id_rows: Sequence[np.ndarray]) -> dict[str, float]:
        """Mean negative log-likelihood of held-out normal clips under each ID's own and the type-pooled covariance."""
        totals = {"per_id": 0.0, "type": 0.0}
        count = 0
        folds = [np.arange(len(idx)) % CHOICE_FOLDS for idx in id_rows]
        for fold in range(CHOICE_FOLDS):
            kept = [idx[f != fold] for idx, f in zip(id_rows, folds, strict=True)]
            held = [idx[f == fold] for idx, f in zip(id_rows, folds, strict=True)]
            # full-rank estimates: a likelihood needs every direction, whatever `components` keeps for scoring
            shared = self._full_mean_precision(np.concatenate([X[k] - X[k].mean(axis=0) for k in kept]))[1]
            for k, h in zip(kept, held, strict=True):
                mean = X[k].mean(axis=0)
                totals["per_id"] += float(_neg_log_likelihood(X[h], mean, self._full_mean_precision(X[k])[1]).sum())
                totals["type"] += float(_neg_log_likelihood(X[h], mean, shared).sum())
                count += len(h)
        return {name: total / count for name, total in totals.items()}

    def _type_precisions(self, X: np.ndarray, groups: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """One precision per machine type from its IDs' deviations from their own means, by ID; notes for fallbacks.

        `fit` then keeps each ID's own mean; a training clip's held-out distance leaves it out of that mean and of
        the pooled covariance (`_held_out_pooled`). A type whose IDs give fewer than two deviations takes the
        covariance pooled over every ID (`_pooled`).
        """
        precision_of, notes = {}, {}
        for names in _by_type(groups).values():
            deviations = _deviations(X, [groups[n] for n in names])
            if deviations is not None:
                precision = self._mean_precision(deviations)[1]
            else:
                precision, note = self._pooled(X, groups)
                notes |= {n: _thin_note(len(groups[n]), note) for n in names}
            precision_of |= {n: precision for n in names}
        return precision_of, notes

    def _held_out_distances(self, X: np.ndarray, groups: Mapping[str, np.ndarray], thin: Sequence[str],
                            leading: Mapping[str, int | None]) -> np.ndarray:
        """Each training clip's distance to its ID's Gaussian fitted without it (within the ID's `leading` directions).

        In-sample distances are far smaller than a new normal clip's when there are few clips per dimension,
        so thresholds and ensemble z-scores taken from them would sit far too low. IDs that would keep fewer
        than `THIN_CLIPS` clips without one (thin IDs, and IDs of exactly `THIN_CLIPS`) stay in-sample.
        An ID of more than `LEAVE_ONE_OUT_MAX_CLIPS` clips is cross-fitted instead: its clips fall in
        `CROSS_FIT_FOLDS` folds and each fold is scored by the Gaussian of the others, so the cost is a
        fixed number of fits rather than one per clip (1000 clips: 6 s -> 0.1 s; see bench.md).
        """
        in_sample = {name: idx for name, idx in groups.items() if name in thin or len(idx) <= THIN_CLIPS}
        out = self._distances(X, in_sample)  # the other rows are filled below
        for name, idx in groups.items():
            if name not in in_sample:
                out[idx] = _held_out(X[idx], partial(self._mean_precision_within, leading=leading.get(name)))
        return out

    def _held_out_pooled(self, X: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per ID of one type-pooled machine type, its training clips' distances to Gaussians fitted without them.

        The type's clips fall in `CROSS_FIT_FOLDS` folds (one clip each when fewer), and each fold is scored by its
        IDs' means and the pooled covariance of the other folds. Left in the covariance, a clip is far closer than a
        new normal clip whenever the type has fewer clips than dimensions (the synthetic default: 9.6 against 18 for
        test normals), and thresholds taken from such distances flag every new clip. An ID with no clip left in a
        fold keeps its in-sample distance there (x minus the mean of the others: n / (n - 1) times x minus the mean).
        The leading directions are chosen once, from all the type's deviations, as `_type_precisions` chose them.
        """
        names = list(groups)
        everything = _deviations(X, [groups[n] for n in names])
        leading = None if everything is None else self._leading(everything)
        rows = np.concatenate([groups[n] for n in names])
        owner = np.concatenate([np.full(len(groups[n]), k) for k, n in enumerate(names)])
        within = np.concatenate([np.arange(len(groups[n])) for n in names])
        folds = min(len(rows), CROSS_FIT_FOLDS)
        fold_of = (within * len(names) + owner) % folds  # each ID's clips spread over the folds
        in_sample = self._distances(X, groups)
        out = np.empty(len(X))
        for fold in range(folds):
            held = fold_of == fold
            kept_by_id = [rows[~held & (owner == k)] for k in range(len(names))]
            deviations = _deviations(X, kept_by_id)
            precision = None if deviations is None else self._mean_precision_within(deviations, leading)[1]
            for k, name in enumerate(names):
                target = rows[held & (owner == k)]
                if precision is None or len(kept_by_id[k]) == 0:
                    n = len(groups[name])
                    out[target] = in_sample[target] * (n / (n - 1) if n > 1 else 1.0)
                elif len(target):
                    diff = X[target] - X[kept_by_id[k]].mean(axis=0)
                    out[target] = np.sqrt(np.maximum(np.einsum("ij,ij->i", diff @ precision, diff), 0.0))
        return {name: out[groups[name]] for name in names}

    def _pooled(self, X: np.ndarray, groups: Mapping[str, np.ndarray]) -> tuple[np.ndarray, str]:
        """A precision for thin IDs and what it is: within-ID covariance pooled over all IDs, else coarser."""
        deviations = _deviations(X, list(groups.values()))
        if deviations is not None:
            return self._mean_precision(deviations)[1], "the covariance pooled over every ID's clips"
        if len(X) >= 2:
            return self._mean_precision(X)[1], "the covariance of all training clips (no ID has two)"
        return np.eye(X.shape[1]), "identity covariance (Euclidean distance; the only training clip)"

    def _distances(self, X: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
        out = np.empty(len(X))
        index = {name: i for i, name in enumerate(self.ids_)}
        for name, idx in groups.items():
            k = index[name]
            diff = X[idx] - self.means_[k]
            out[idx] = np.einsum("ij,ij->i", diff @ self.precisions_[k], diff)
        return np.sqrt(np.maximum(out, 0.0))

    def score(self, X: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """(n,) Mahalanobis distance of each embedding to its own ID's Gaussian."""
        X, groups = self._validated(X, ids)
        return self._distances(X, groups)

    def _fit_new(self, X: np.ndarray, ids: Sequence[str]) -> GaussianScorer:
        """Fit the refit IDs with their covariance drawn towards the one the other IDs share (`_enrolment_fit`)."""
        prior = self._shared_covariance(exclude=set(np.asarray(ids, dtype=str).tolist()))
        if prior is None:
            return super()._fit_new(X, ids)
        X, ids, groups = self._grouped(X, ids)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the scorer was fitted on {self.n_features_in_}")
        fresh = GaussianScorer(**self.get_params())
        fresh.leading_by_id_ = self._leading_record(groups, X)
        as_fit = {name for name, idx in groups.items() if self._fits_leading(X[idx])}  # enough clips: as `fit` does

        def fitter(name: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
            """How an ID's Gaussian is fitted, chosen once from all its clips and kept for its held-out folds."""
            if name in as_fit:
                return partial(self._mean_precision_within, leading=fresh.leading_by_id_[name]["components"])
            return partial(_enrolment_fit, prior=prior)

        fitted = [fitter(name)(X[idx]) for name, idx in groups.items()]
        fresh.ids_ = list(groups)
        fresh.means_ = np.stack([m for m, _ in fitted])
        fresh.precisions_ = np.stack([p for _, p in fitted])
        fresh.n_features_in_ = X.shape[1]
        fresh.train_ids_ = ids
        train = np.zeros(len(X))
        for name, idx in groups.items():
            if len(idx) > 1:
                train[idx] = _held_out(X[idx], fitter(name))
        fresh.train_scores_ = train
        fresh._note_fallbacks({name: f"{len(idx)} clip(s): covariance drawn towards the other machines' shared "
                               f"covariance ({len(idx) - 1} of {len(idx) - 1 + X.shape[1]} weight on its own)"
                               for name, idx in groups.items() if name not in as_fit})
        return fresh

    def _shared_covariance(self, exclude: set[str]) -> np.ndarray | None:
        """The mean covariance of the fitted IDs outside `exclude`: what machines seen so far share; None if none."""
        rows = [k for k, name in enumerate(self.ids_) if name not in exclude]
        if not rows:
            return None
        return np.mean([pinvh(self.precisions_[k]) for k in rows], axis=0)

    def _merged(self, fresh: Scorer) -> GaussianScorer:
        merged = super()._merged(fresh)
        sources = {name: (self, k) for k, name in enumerate(self.ids_)}
        sources |= {name: (fresh, k) for k, name in enumerate(fresh.ids_)}
        merged.means_ = np.stack([src.means_[k] for src, k in (sources[n] for n in merged.ids_)])
        merged.precisions_ = np.stack([src.precisions_[k] for src, k in (sources[n] for n in merged.ids_)])
        merged.leading_by_id_ = {n: r for n, r in getattr(self, "leading_by_id_", {}).items() if n not in fresh.ids_}
        merged.leading_by_id_ |= getattr(fresh, "leading_by_id_", {})
        return merged

    def _empty_arrays(self, n_features: int) -> dict[str, np.ndarray]:
        self._check_params()
        return {"means": np.empty((0, n_features)), "precisions": np.empty((0, n_features, n_features))}

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {"means": self.means_, "precisions": self.precisions_}
        return arrays, {"covariance_by_type": dict(getattr(self, "covariance_by_type_", {})),
                        "leading_by_id": dict(getattr(self, "leading_by_id_", {}))}

    def _set_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        ids = self.ids_
        means = np.asarray(arrays["means"], dtype=np.float64)
        precisions = np.asarray(arrays["precisions"], dtype=np.float64)
        n, d = means.shape
        if n != len(ids) or precisions.shape != (n, d, d):
            raise ValueError(
                f"means {means.shape} / precisions {precisions.shape} do not match {len(ids)} ids"
            )
        self.means_, self.precisions_, self.n_features_in_ = means, precisions, d
        self.covariance_by_type_ = dict(meta.get("covariance_by_type") or {})
        self.leading_by_id_ = dict(meta.get("leading_by_id") or {})


def _deviations(X: np.ndarray, id_rows: Sequence[np.ndarray]) -> np.ndarray | None:
    """Each row's deviation from its own ID's mean, pooled over the IDs of two rows or more; None if fewer than two."""
    parts = [X[rows] - X[rows].mean(axis=0) for rows in id_rows if len(rows) > 1]
    return np.concatenate(parts) if sum(len(p) for p in parts) >= 2 else None


def _by_type(names: Iterable[str]) -> dict[str, list[str]]:
    """Machine names ("type/id") grouped by machine type, in their order."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(machine_type_of(name), []).append(name)
    return out


def file_order_drift(X: np.ndarray) -> float:
    """How much a machine's normal embeddings (rows in file order) drift: the Calinski-Harabasz index of
    `DRIFT_BLOCKS` contiguous blocks, about 1 for clips in random order, far above for recording sessions that differ.

    File order stands in for recording order (names that count up or carry a timestamp); shuffled names read as
    steady. Fewer than two clips per block: 0.
    """
    n = len(X)
    if n < 2 * DRIFT_BLOCKS:
        return 0.0
    return float(calinski_harabasz_score(X, np.arange(n) * DRIFT_BLOCKS // n))


def _enrolment_fit(X: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of a machine known from few clips: its sample covariance blended with `prior`.

    The prior counts as many pseudo-clips as there are dimensions (the posterior mean under an
    inverse-Wishart prior with d degrees of freedom), so 5 clips in 64 dimensions lean almost wholly on
    the covariance the trained machines share, and 100 clips mostly on their own.
    """
    n, d = X.shape
    mean = X.mean(axis=0)
    if n < 2:
        return mean, pinvh(prior)
    weight = (n - 1) / (n - 1 + d)
    cov = weight * np.atleast_2d(np.cov(X, rowvar=False)) + (1 - weight) * prior
    return mean, pinvh(cov)


def _neg_log_likelihood(X: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(n,) Gaussian negative log-likelihood of each row, up to the constant d/2 log(2 pi) every estimate shares."""
    diff = X - mean
    logdet = np.linalg.slogdet(precision)[1]
    return 0.5 * (np.einsum("ij,ij->i", diff @ precision, diff) - logdet)


def _thin_note(n_clips: int, covariance: str) -> str:
    mean = "its clip as the mean" if n_clips == 1 else f"the mean of its {n_clips} clips"
    return f"{n_clips} training clip{'s' if n_clips > 1 else ''}: {mean}, {covariance}"


class SpectrumScorer(GaussianScorer):
    """The spectral floor as a detector's scorer: a per-ID Gaussian on each clip's per-band log-mel mean and std.

    It needs no network, so it is what an encoder's embedding is measured against, and an ensemble member
    that keeps an encoder which never heard a machine from falling far below what its average spectrum shows.
    """

    input_name: str = "spectrum"  # the output `ssad.encoder.encoder.SPECTRUM` that every loaded model adds
