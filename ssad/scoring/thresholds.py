"""Decision thresholds per machine ID from a gamma fit to the normal training scores, as the DCASE 2021+ baselines set them."""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ssad.core.atomic import write_text_atomic
from ssad.core.errors import SsadError
from ssad.scoring.base import THIN_CLIPS, check_ids, check_known_ids, group_indices

__all__ = ["GammaThreshold", "load_thresholds", "save_thresholds"]

logger = logging.getLogger(__name__)

_MIN_FIT = 5
_NAN = float("nan")


def _gamma_threshold(scores: np.ndarray, percentile: float) -> tuple[float, list[float] | None]:
    """Threshold at `percentile` of a gamma fitted to `scores`, and [shape, loc, scale]; (NaN, None) if no fit is usable.

    Two fits are tried and the one closer to the data (Kolmogorov-Smirnov) is kept: a free-location fit on
    standardised scores (right for bell-shaped scores far from zero, e.g. Mahalanobis distances or NLLs)
    and a fit on scores shifted so the lowest maps to a small positive value (right for skewed scores near
    their lower bound). A fit farther from the data than `_max_ks`, or whose threshold leaves a share of
    the training scores above it far from 1 - percentile, is rejected.
    """
    lo, hi = float(scores.min()), float(scores.max())
    spread = hi - lo
    if scores.size < _MIN_FIT or not spread > 1e-12 * max(1.0, abs(hi)):
        return _NAN, None
    center, sd = float(scores.mean()), float(scores.std())
    shift = lo - 0.01 * spread
    best: tuple[float, float, list[float]] | None = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for attempt in ("free_loc", "shifted"):
            try:
                if attempt == "free_loc":
                    a, loc, scale = stats.gamma.fit((scores - center) / sd)
                    loc, scale = loc * sd + center, scale * sd
                else:
                    a, _, scale = stats.gamma.fit(scores - shift, floc=0.0)
                    loc = shift
                params = [float(a), float(loc), float(scale)]
                if not all(math.isfinite(v) for v in params) or params[0] <= 0 or params[2] <= 0:
                    continue
                t = float(stats.gamma.ppf(percentile, *params))
                ks = float(stats.kstest(scores, "gamma", args=tuple(params)).statistic)
            except (ValueError, RuntimeError, FloatingPointError, OverflowError):
                continue
            if math.isfinite(t) and math.isfinite(ks) and (best is None or ks < best[0]):
                best = (ks, t, params)
    if best is None or best[0] > _max_ks(scores.size):
        return _NAN, None
    # the tail matters most: the threshold must leave about 1 - percentile of the training scores above it
    above = float(np.mean(scores > best[1]))
    n = scores.size
    if abs(above - (1 - percentile)) > 3 * math.sqrt(percentile * (1 - percentile) / n) + 1 / n:
        return _NAN, None
    return best[1], best[2]


def _max_ks(n: int) -> float:
    """Largest Kolmogorov-Smirnov distance accepted: the 1% critical value, but never below 0.1."""
    return max(0.1, 1.63 / math.sqrt(n))


class GammaThreshold(BaseEstimator):
    """Per machine ID, the `percentile` point of a gamma distribution fitted to the normal training scores.

    The gamma's location is fitted too (scores may be negative or tiny, e.g. log-likelihoods): of a
    free-location fit and a fit with the lowest score shifted to a small positive value, the one closer to
    the data is kept; when neither fits (too few or constant scores, or a tail a gamma cannot follow), the
    empirical quantile is used with a logged warning.

    An ID with fewer than `THIN_CLIPS` training scores gets the median threshold of the IDs with enough
    (warned, named in `fallbacks_`); when no ID has enough, each gets its empirical quantile.

    Fitted attributes: `threshold_` (id -> threshold), `gamma_params_` (id -> [shape, loc, scale] or None
    where the empirical quantile or the median was used), `fallbacks_` (thin id -> what it got).
    """

    def __init__(self, percentile: float = 0.9, scorer: str = "") -> None:
        self.percentile = percentile
        self.scorer = scorer

    def _of(self, name: str) -> str:
        """How warnings name one ID's threshold: with the scorer it belongs to, when known."""
        return f"{self.scorer} threshold of {name}" if self.scorer else f"threshold of {name}"

    def fit(self, train_scores: Any, ids: Sequence[str]) -> GammaThreshold:
        """Fit one gamma per ID to the normal training scores and keep its `percentile` point as the threshold."""
        if (
            isinstance(self.percentile, bool)
            or not isinstance(self.percentile, (int, float))
            or not 0 < self.percentile < 1
        ):
            raise ValueError(f"percentile={self.percentile!r} must be a number strictly between 0 and 1")
        scores = np.asarray(train_scores, dtype=np.float64)
        if scores.ndim != 1 or not np.all(np.isfinite(scores)):
            raise ValueError(f"train_scores must be 1-D and finite, got shape {scores.shape}")
        groups = group_indices(check_ids(ids, len(scores)))
        if not groups:
            raise ValueError("no training scores to fit thresholds on")
        self.threshold_: dict[str, float] = {}
        self.gamma_params_: dict[str, list[float] | None] = {}
        self.fallbacks_: dict[str, str] = {}
        thin = [name for name, idx in groups.items() if len(idx) < THIN_CLIPS]
        for name, idx in groups.items():
            if name in thin and len(thin) < len(groups):
                continue  # set below from the IDs with enough scores
            s = scores[idx]
            t, params = _gamma_threshold(s, float(self.percentile))
            if params is None:
                t = float(np.quantile(s, self.percentile))
                logger.warning(
                    "%s: gamma fit failed (%d training scores); using the empirical %.3g quantile %.6g",
                    self._of(name),
                    s.size,
                    self.percentile,
                    t,
                )
                if name in thin:
                    self.fallbacks_[name] = f"{s.size} training score(s): their empirical {self.percentile:.3g} quantile"
            self.threshold_[name] = t
            self.gamma_params_[name] = params
        if len(thin) < len(groups):
            self._pool_thin({name: len(groups[name]) for name in thin}, list(self.threshold_.values()))
        self.fallbacks_ = dict(sorted(self.fallbacks_.items()))
        return self

    def fit_empty(self) -> GammaThreshold:
        """Thresholds for no machine yet (an empty detector's): `refit_ids` adds each machine's."""
        self.threshold_, self.gamma_params_, self.fallbacks_ = {}, {}, {}
        return self

    def refit_ids(self, train_scores: Any, ids: Sequence[str]) -> GammaThreshold:
        """A copy with the IDs in `ids` fitted anew on their training scores, every other ID's threshold unchanged.

        A refit ID with fewer than `THIN_CLIPS` scores gets the median threshold of the others, as in `fit`.
        """
        check_is_fitted(self, "threshold_")
        fresh = GammaThreshold(self.percentile, self.scorer).fit(train_scores, ids)
        merged = GammaThreshold(self.percentile, self.scorer)
        others = [k for k in self.threshold_ if k not in fresh.threshold_]
        merged.threshold_ = {k: self.threshold_[k] for k in others} | fresh.threshold_
        merged.gamma_params_ = {k: self.gamma_params_.get(k) for k in others} | fresh.gamma_params_
        merged.fallbacks_ = {k: v for k, v in self.fallbacks_.items() if k in others} | fresh.fallbacks_
        counts = dict(zip(*np.unique(check_ids(ids, len(np.asarray(train_scores))), return_counts=True), strict=True))
        thin = [str(k) for k, n in counts.items() if n < THIN_CLIPS]
        if thin and others:
            merged._pool_thin({name: counts[name] for name in thin}, [self.threshold_[k] for k in others])
        merged.threshold_ = dict(sorted(merged.threshold_.items()))
        merged.fallbacks_ = dict(sorted(merged.fallbacks_.items()))
        return merged

    def _pool_thin(self, thin: Mapping[str, int], others: Sequence[float]) -> None:
        """Give each thin ID (name -> its training scores) the median of the other IDs' thresholds, and say so."""
        pooled = float(np.median(others))
        for name, count in thin.items():
            self.threshold_[name], self.gamma_params_[name] = pooled, None
            self.fallbacks_[name] = f"{count} training score(s): the median threshold of the other IDs, {pooled:.6g}"
            logger.warning("%s: %s", self._of(name), self.fallbacks_[name])

    def decide(self, scores: Any, ids: Sequence[str]) -> np.ndarray:
        """(n,) int decisions, 1 = anomalous (score above its ID's threshold), 0 = normal."""
        check_is_fitted(self, "threshold_")
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1:
            raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
        ids = check_ids(ids, len(scores))
        uniq, inverse = np.unique(ids, return_inverse=True)
        check_known_ids(uniq.tolist(), list(self.threshold_))
        thresholds = np.array([self.threshold_[u] for u in uniq.tolist()], dtype=np.float64)[inverse]
        return (scores > thresholds).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the percentile, each ID's threshold and gamma parameters."""
        check_is_fitted(self, "threshold_")
        return {
            "class": type(self).__name__,
            "percentile": float(self.percentile),
            "scorer": self.scorer,
            "thresholds": dict(self.threshold_),
            "gamma_params": dict(self.gamma_params_),
            "fallbacks": dict(getattr(self, "fallbacks_", {})),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GammaThreshold:
        """Rebuild from `to_dict` output."""
        if not isinstance(data, Mapping) or data.get("class") != cls.__name__:
            raise SsadError(f"not a saved {cls.__name__}: expected a JSON object with class={cls.__name__!r}")
        try:
            out = cls(float(data["percentile"]), str(data.get("scorer") or ""))
            out.threshold_ = {str(k): float(v) for k, v in data["thresholds"].items()}
            params = data.get("gamma_params") or {}
            out.gamma_params_ = {
                k: (None if params.get(k) is None else [float(v) for v in params[k]]) for k in out.threshold_
            }
            out.fallbacks_ = {str(k): str(v) for k, v in dict(data.get("fallbacks") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SsadError(f"saved {cls.__name__} is malformed: {err!r}") from None
        return out

    def save(self, path: str | Path) -> Path:
        """Write the thresholds as JSON."""
        return _write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> GammaThreshold:
        """Read thresholds written by `save`."""
        return cls.from_dict(_read_json(path))


def save_thresholds(thresholds: Mapping[str, GammaThreshold], path: str | Path) -> Path:
    """Write scorer -> fitted `GammaThreshold` as one JSON object."""
    return _write_json({scorer: thr.to_dict() for scorer, thr in thresholds.items()}, path)


def load_thresholds(path: str | Path) -> dict[str, GammaThreshold]:
    """Read scorer -> `GammaThreshold` written by `save_thresholds` / `write_evaluation`."""
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise SsadError(f"{path}: expected a JSON object scorer -> thresholds")
    thresholds = {str(scorer): GammaThreshold.from_dict(d) for scorer, d in doc.items()}
    for scorer, threshold in thresholds.items():
        threshold.scorer = threshold.scorer or scorer  # files written before thresholds knew their scorer
    return thresholds


def _write_json(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Thresholds as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return Path(path)


def _read_json(path: str | Path) -> Any:
    """A thresholds file's JSON; a clear error naming the file when it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SsadError(f"{path}: cannot read thresholds: {err}") from None
