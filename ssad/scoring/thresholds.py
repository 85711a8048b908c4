"""Decision thresholds per machine that aim at a stated false-alarm rate on recordings made later.

A machine's threshold is set from its normal clips' **held-out scores** (`ssad.scoring.held_out`: each clip scored
by the scorer fitted without its whole recording group), so the shift from one recording to the next is in them.
How the (1 - rate) point of those scores is read (`METHODS`):
- ``"predictive"`` (the default): the recordings as a random effect. Each recording group's mean score varies
  around the machine's, and its clips around their recording's: a new recording's score is predicted with both
  spreads and the uncertainty of their estimates (Student's t with Satterthwaite's degrees of freedom), so few
  recordings or few clips widen the margin and many steady ones shrink it to the plain quantile;
- ``"gamma"``: the point of a gamma fitted to the held-out scores (the DCASE 2021+ baselines' rule), the empirical
  quantile where no gamma fits;
- ``"quantile"``: the empirical quantile.
A learning period on site (`AlarmThreshold.calibrated`) adds recordings of the machine where it stands.
"""

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
from ssad.scoring.recording_shift import RecordingShift, RecordingSpread, recording_shift

__all__ = ["DEFAULT_FALSE_ALARM_RATE", "METHODS", "MIN_UNSEEN", "AlarmThreshold", "check_rate", "load_thresholds",
           "save_thresholds", "threshold_at"]

logger = logging.getLogger(__name__)

#: the share of a normal machine's later recordings a threshold lets through as alarms, unless told otherwise
DEFAULT_FALSE_ALARM_RATE = 0.05
METHODS = ("predictive", "gamma", "quantile")
#: clips a model never trained on (over all machines) that a threshold needs before it learns from them
MIN_UNSEEN = 10
_MIN_FIT = 5
_NAN = float("nan")


def check_rate(rate: Any) -> float:
    """A false-alarm rate as a float strictly between 0 and 1; ValueError naming the bad value otherwise."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        msg = f"false_alarm_rate={rate!r} must be a number strictly between 0 and 1 (e.g. 0.05: 5 % of normal clips)"
        raise ValueError(msg)
    return float(rate)


def _gamma_point(scores: np.ndarray, percentile: float) -> float:
    """The `percentile` point of a gamma fitted to `scores`; NaN when no fit is usable.

    Two fits are tried and the one closer to the data (Kolmogorov-Smirnov) is kept: a free-location fit on
    standardised scores (right for bell-shaped scores far from zero) and a fit on scores shifted so the lowest
    maps to a small positive value (right for skewed scores near their lower bound). A fit farther from the data
    than the 1 % critical value (at least 0.1), or whose point leaves a share of the scores above it far from
    1 - percentile, is rejected.
    """
    lo, hi = float(scores.min()), float(scores.max())
    spread = hi - lo
    if scores.size < _MIN_FIT or not spread > 1e-12 * max(1.0, abs(hi)):
        return _NAN
    center, sd = float(scores.mean()), float(scores.std())
    shift = lo - 0.01 * spread
    best: tuple[float, float] | None = None
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
                if not all(math.isfinite(v) for v in (a, loc, scale)) or a <= 0 or scale <= 0:
                    continue
                point = float(stats.gamma.ppf(percentile, a, loc, scale))
                ks = float(stats.kstest(scores, "gamma", args=(a, loc, scale)).statistic)
            except (ValueError, RuntimeError, FloatingPointError, OverflowError):
                continue
            if math.isfinite(point) and math.isfinite(ks) and (best is None or ks < best[0]):
                best = (ks, point)
    if best is None or best[0] > max(0.1, 1.63 / math.sqrt(scores.size)):
        return _NAN
    n = scores.size
    if abs(float(np.mean(scores > best[1])) - (1 - percentile)) > 3 * math.sqrt(percentile * (1 - percentile) / n) + 1 / n:
        return _NAN
    return best[1]


def _predictive_point(scores: np.ndarray, groups: np.ndarray, rate: float) -> float:
    """The (1 - rate) point of a new recording's normal scores, recordings as a random effect (module docstring)."""
    spread = RecordingSpread.of(scores, groups)
    count, n = len(spread.means), len(scores)
    return spread.point(float(np.mean(spread.means)), 1 + 1 / count, 1 + 1 / n, rate)


def _site_point(scores: np.ndarray, groups: np.ndarray, site: np.ndarray, site_groups: np.ndarray,
                rate: float) -> float:
    """The (1 - rate) point of the site's later normal scores, centred on the site's own mean.

    How far one recording moves from the next is measured at each place the machine was heard, the enrolment's and
    the site's, and pooled (the jump from the enrolment to the site is the site's level, not a day-to-day spread);
    the spread within recordings comes from all of them. Student's t on both estimates' degrees of freedom.
    """
    enrolment, there = RecordingSpread.of(scores, groups), RecordingSpread.of(site, site_groups)
    dofs = (len(enrolment.means) - 1, len(there.means) - 1)
    between = ((enrolment.between * dofs[0] + there.between * dofs[1]) / sum(dofs)) if sum(dofs) else 0.0
    offset = (groups.max() + 1) if groups.size else 0
    both = RecordingSpread.of(np.concatenate([scores, site]), np.concatenate([groups, site_groups + offset]))
    a, b = between * (1 + 1 / len(there.means)), both.within * (1 + 1 / site.size)
    if a + b <= 0:
        return float(site.max())
    dof = (a + b) ** 2 / (a ** 2 / max(sum(dofs), 1) + b ** 2 / max(len(scores) + site.size - len(both.means), 1))
    return float(site.mean() + stats.t.ppf(1 - rate, dof) * math.sqrt(a + b))


def threshold_at(scores: Any, groups: Any, rate: float, method: str = "predictive") -> tuple[float, str]:
    """A machine's threshold from its held-out normal scores (and their recording groups), and what was used."""
    scores = np.asarray(scores, dtype=np.float64)
    if method == "predictive" and scores.size >= _MIN_FIT:
        return _predictive_point(scores, np.asarray(groups), rate), "predictive"
    if method in ("predictive", "gamma"):
        point = _gamma_point(scores, 1 - rate)
        if math.isfinite(point):
            return point, "gamma"
    return float(np.quantile(scores, 1 - rate)), "quantile"


class AlarmThreshold(BaseEstimator):
    """Per machine, the score above which a clip raises an alarm, aiming at `false_alarm_rate` on later recordings.

    Args:
        false_alarm_rate: the share of a normal machine's clips allowed to raise an alarm.
        scorer: the scorer whose scores it decides on (for messages).
        method: how the threshold is read from the held-out scores (`METHODS`).

    `fit` takes each machine's normal clips' held-out scores and their recording groups. A machine with fewer than
    `THIN_CLIPS` scores gets the median threshold of the others (`fallbacks_` says so). Fitted attributes:
    `threshold_` (machine -> threshold), `rate_` (machine -> the false-alarm rate it aims at: `false_alarm_rate`
    unless the machine was given its own), `normal_scores_` and `groups_` (machine -> the held-out scores and groups
    it was set from), `how_` (machine -> the method used, and "calibrated" after a learning period).
    """

    _STATE = ("threshold_", "rate_", "normal_scores_", "groups_", "how_", "fallbacks_")

    def __init__(self, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, scorer: str = "",
                 method: str = "predictive") -> None:
        self.false_alarm_rate = false_alarm_rate
        self.scorer = scorer
        self.method = method

    def _of(self, name: str) -> str:
        return f"{self.scorer} threshold of {name}" if self.scorer else f"threshold of {name}"

    def _check(self) -> float:
        if self.method not in METHODS:
            msg = f"method={self.method!r} is not supported; allowed: {list(METHODS)}"
            raise ValueError(msg)
        return check_rate(self.false_alarm_rate)

    def fit(self, scores: Any, ids: Sequence[str], groups: Sequence[Any] | None = None,
            unseen: Sequence[bool] | None = None) -> AlarmThreshold:
        """Set each machine's threshold from its normal clips' held-out scores (groups: their recordings).

        `unseen` marks the clips the model never trained on (a run's validation clips): with `MIN_UNSEEN` of them
        over all machines, each threshold is read from how far they sit from the other clips (`_unseen_points`).
        """
        self._clear()
        self._fit_machines(scores, ids, groups, others=None, rate=None)
        if unseen is not None and int(np.sum(unseen)) >= MIN_UNSEEN and self.method == "predictive":
            self._unseen_points(np.asarray(scores, dtype=np.float64), check_ids(ids, len(np.asarray(scores))),
                                np.asarray(unseen, dtype=bool))
        return self

    def _unseen_points(self, scores: np.ndarray, ids: np.ndarray, unseen: np.ndarray) -> None:
        """Thresholds that allow for how much better a model knows the clips it trained on than a new recording.

        A clip the model never trained on sits `d` above the mean of the seen clips of its recording; in units of
        its machine's spread within recordings, pooled over the machines, these give the shift (their mean) and the
        widening (their spread) of a new clip against the seen ones. Each machine's threshold is the predictive one
        (recordings as a random effect) with its within-recording part shifted and widened so, and Student's t on
        the degrees of freedom of both estimates (Satterthwaite).
        """
        parts, units = [], {}
        for name in self.threshold_:
            mine = np.flatnonzero(ids == name)
            if name in self.fallbacks_ or (~unseen[mine]).sum() < _MIN_FIT:
                continue
            groups, hidden = self.groups_[name], unseen[mine]
            spread = RecordingSpread.of(scores[mine][~hidden], groups[~hidden])
            if spread.within <= 0:
                continue
            seen_means = {g: float(scores[mine][~hidden & (groups == g)].mean()) for g in np.unique(groups[~hidden])}
            offsets = [(h - seen_means[g]) / math.sqrt(spread.within)
                       for h, g in zip(scores[mine][hidden], groups[hidden], strict=True) if g in seen_means]
            parts += offsets
            units[name] = spread
        z = np.asarray(parts)
        if z.size < MIN_UNSEEN:
            return
        shift, widening = float(z.mean()), float(np.var(z, ddof=1))
        for name, spread in units.items():
            count = len(spread.means)
            a = spread.between * (1 + 1 / count)
            b = spread.within * widening * (1 + 1 / z.size)
            dof = (a + b) ** 2 / (a ** 2 / max(count - 1, 1) + b ** 2 / max(z.size - 1, 1))
            center = float(np.mean(spread.means)) + shift * math.sqrt(spread.within)
            self.threshold_[name] = float(center + stats.t.ppf(1 - self.rate_[name], dof) * math.sqrt(a + b))
            self.how_[name] = f"predictive, within recordings as {z.size} clips the model never trained on sit"

    def fit_empty(self) -> AlarmThreshold:
        """Thresholds for no machine yet (an empty detector's): `refit_ids` adds each machine's."""
        self._check()
        self._clear()
        return self

    def _clear(self) -> None:
        for attribute in self._STATE:
            setattr(self, attribute, {})

    def _copy(self, without: set[str] = frozenset()) -> AlarmThreshold:
        out = AlarmThreshold(self.false_alarm_rate, self.scorer, self.method)
        for attribute in self._STATE:
            setattr(out, attribute, {k: v for k, v in getattr(self, attribute, {}).items() if k not in without})
        return out

    def refit_ids(self, scores: Any, ids: Sequence[str], groups: Sequence[Any] | None = None, *,
                  false_alarm_rate: float | None = None) -> AlarmThreshold:
        """A copy with the machines in `ids` set anew from their held-out scores, every other machine unchanged.

        `false_alarm_rate` is theirs (default: what they aimed at before, else the detector's `false_alarm_rate`).
        """
        check_is_fitted(self, "threshold_")
        new = set(np.asarray(ids, dtype=str).tolist())
        merged = self._copy(without=new)
        rate = false_alarm_rate
        if rate is None and len(new) == 1 and next(iter(new)) in getattr(self, "rate_", {}):
            rate = self.rate_[next(iter(new))]
        return merged._fit_machines(scores, ids, groups, others=list(merged.threshold_.values()), rate=rate)

    def shift_of(self, machine: str) -> RecordingShift:
        """How the machine's held-out normal scores move between its recordings (`RecordingShift`)."""
        check_is_fitted(self, "threshold_")
        return recording_shift(self.normal_scores_.get(machine, np.empty(0)),
                               self.groups_.get(machine, np.empty(0, dtype=np.int64)))

    def rate_of(self, machine: str) -> float:
        """The false-alarm rate `machine`'s threshold aims at."""
        return float(getattr(self, "rate_", {}).get(machine, self.false_alarm_rate))

    def _fit_machines(self, scores: Any, ids: Sequence[str], groups: Sequence[Any] | None,
                      others: list[float] | None, rate: float | None) -> AlarmThreshold:
        default = self._check()
        rate = default if rate is None else check_rate(rate)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or not np.all(np.isfinite(scores)):
            raise ValueError(f"held-out scores must be 1-D and finite, got shape {scores.shape}")
        ids = check_ids(ids, len(scores))
        groups = np.arange(len(scores)) if groups is None else np.asarray(groups)
        by_machine = group_indices(ids)
        if not by_machine:
            raise ValueError("no scores to set thresholds from")
        thin = {name: len(idx) for name, idx in by_machine.items() if len(idx) < THIN_CLIPS}
        for name, idx in by_machine.items():
            self.rate_[name] = rate
            self.normal_scores_[name] = scores[idx]
            self.groups_[name] = np.unique(groups[idx], return_inverse=True)[1]
            if name in thin and (len(thin) < len(by_machine) or others):
                continue
            self.threshold_[name], self.how_[name] = threshold_at(scores[idx], self.groups_[name], rate, self.method)
        kept = [*(others or []), *(self.threshold_[n] for n in by_machine if n not in thin)]
        if thin and kept:
            pooled = float(np.median(kept))
            for name, count in thin.items():
                self.threshold_[name], self.how_[name] = pooled, "median of the other machines"
                self.fallbacks_[name] = f"{count} training score(s): the median threshold of the other machines, {pooled:.6g}"
                logger.warning("%s: %s", self._of(name), self.fallbacks_[name])
        self.threshold_ = dict(sorted(self.threshold_.items()))
        return self

    def calibrated(self, machine: str, site_scores: Any, site_groups: Sequence[Any] | None = None,
                   anchored: bool = True) -> AlarmThreshold:
        """A copy whose threshold for `machine` is set where it stands, from `site_scores` of normal clips recorded
        there (scored by a model that never saw them; `site_groups`: their recordings where the files tell them
        apart, else one recording: blocks of a stream's file order are a guess, and a drifting machine's short
        blocks would understate how far a later recording moves).

        The threshold is centred on the site's scores, with the spreads between and within recordings of every
        place the machine was heard (`_site_point`); `anchored=False` reads it instead from all held-out scores
        with the site as one more recording (measured in experiments/results/alarms.md, not used).
        """
        check_is_fitted(self, "threshold_")
        check_known_ids([machine], list(self.threshold_))
        site = np.asarray(site_scores, dtype=np.float64).ravel()
        if not site.size or not np.all(np.isfinite(site)):
            raise ValueError("calibration needs finite scores of at least one normal clip")
        old = self.normal_scores_.get(machine, np.empty(0))
        old_groups = self.groups_.get(machine, np.zeros(len(old), dtype=np.int64))
        mine = (np.zeros(site.size, dtype=np.int64) if site_groups is None
                else np.unique(np.asarray(site_groups), return_inverse=True)[1])
        scores = np.concatenate([old, site])
        groups = np.concatenate([old_groups, mine + ((old_groups.max() + 1) if old_groups.size else 0)])
        out = self._copy()
        if anchored and self.method == "predictive" and scores.size >= _MIN_FIT:
            out.threshold_[machine] = _site_point(old, old_groups, site, mine, self.rate_of(machine))
            how = "site"
        else:
            out.threshold_[machine], how = threshold_at(scores, groups, self.rate_of(machine), self.method)
        out.normal_scores_[machine], out.groups_[machine] = scores, groups
        out.how_[machine] = f"{how}, calibrated on {site.size} site clip(s)"
        out.fallbacks_.pop(machine, None)
        return out

    def adopted(self, other: AlarmThreshold, machine: str) -> AlarmThreshold:
        """A copy with `machine`'s threshold (and the scores it was set from) taken from `other`."""
        check_known_ids([machine], list(other.threshold_))
        out = self._copy()
        for attribute in self._STATE:
            theirs = getattr(other, attribute, {})
            if machine in theirs:
                getattr(out, attribute)[machine] = theirs[machine]
            else:
                getattr(out, attribute).pop(machine, None)
        return out

    def decide(self, scores: Any, ids: Sequence[str]) -> np.ndarray:
        """(n,) int decisions, 1 = anomalous (score above its machine's threshold), 0 = normal."""
        return (np.asarray(scores, dtype=np.float64) > self.thresholds_of(ids, len(np.atleast_1d(scores)))).astype(np.int64)

    def thresholds_of(self, ids: Sequence[str], n: int | None = None) -> np.ndarray:
        """(n,) each clip's machine's threshold."""
        check_is_fitted(self, "threshold_")
        ids = check_ids(ids, len(ids) if n is None else n)
        uniq, inverse = np.unique(ids, return_inverse=True)
        check_known_ids(uniq.tolist(), list(self.threshold_))
        return np.array([self.threshold_[u] for u in uniq.tolist()], dtype=np.float64)[inverse]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the rate, the method, and per machine its threshold and the scores it was set from."""
        check_is_fitted(self, "threshold_")
        return {
            "class": type(self).__name__,
            "false_alarm_rate": float(self.false_alarm_rate),
            "method": self.method,
            "scorer": self.scorer,
            "thresholds": dict(self.threshold_),
            "rates": dict(getattr(self, "rate_", {})),
            "how": dict(self.how_),
            "normal_scores": {k: [round(float(v), 6) for v in s] for k, s in self.normal_scores_.items()},
            "groups": {k: [int(g) for g in s] for k, s in self.groups_.items()},
            "fallbacks": dict(self.fallbacks_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmThreshold:
        """Rebuild from `to_dict` output (or a GammaThreshold of earlier ssad: its percentile becomes the rate)."""
        if not isinstance(data, Mapping) or data.get("class") not in (cls.__name__, "GammaThreshold"):
            raise SsadError(f"not saved thresholds: expected a JSON object with class={cls.__name__!r}")
        try:
            rate = data["false_alarm_rate"] if "false_alarm_rate" in data else 1 - float(data["percentile"])
            out = cls(float(rate), str(data.get("scorer") or ""), str(data.get("method") or "gamma"))
            out.threshold_ = {str(k): float(v) for k, v in data["thresholds"].items()}
            out.how_ = {str(k): str(v) for k, v in dict(data.get("how") or {}).items()}
            out.rate_ = {str(k): check_rate(float(v)) for k, v in dict(data.get("rates") or {}).items()}
            out.normal_scores_ = {str(k): np.asarray(v, dtype=np.float64)
                                  for k, v in dict(data.get("normal_scores") or {}).items()}
            out.groups_ = {str(k): np.asarray(v, dtype=np.int64) for k, v in dict(data.get("groups") or {}).items()}
            out.fallbacks_ = {str(k): str(v) for k, v in dict(data.get("fallbacks") or {}).items()}
            out._check()
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SsadError(f"saved {cls.__name__} is malformed: {err!r}") from None
        return out

    def save(self, path: str | Path) -> Path:
        """Write the thresholds as JSON."""
        return _write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> AlarmThreshold:
        """Read thresholds written by `save`."""
        return cls.from_dict(_read_json(path))


def save_thresholds(thresholds: Mapping[str, AlarmThreshold], path: str | Path) -> Path:
    """Write scorer -> fitted `AlarmThreshold` as one JSON object."""
    return _write_json({scorer: thr.to_dict() for scorer, thr in thresholds.items()}, path)


def load_thresholds(path: str | Path) -> dict[str, AlarmThreshold]:
    """Read scorer -> `AlarmThreshold` written by `save_thresholds`."""
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise SsadError(f"{path}: expected a JSON object scorer -> thresholds")
    thresholds = {str(scorer): AlarmThreshold.from_dict(d) for scorer, d in doc.items()}
    for scorer, threshold in thresholds.items():
        threshold.scorer = threshold.scorer or scorer
    return thresholds


def _write_json(doc: Mapping[str, Any], path: str | Path) -> Path:
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return Path(path)


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SsadError(f"{path}: cannot read thresholds: {err}") from None
