"""A machine's normal scores taken recording by recording: their spread within and between recordings
(`RecordingSpread`, from which thresholds predict a new recording), how much they move from one recording to the next,
and whether a learning period on site is advised: when they shift clearly, or when too few recordings show how far a
later one may move."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["FEW_RECORDINGS", "SHIFT_P", "RecordingShift", "RecordingSpread", "recording_shift"]

#: a machine's held-out normal scores differ between its recordings when a one-way ANOVA says so at this p-value
#: (3 recordings or more): lathe and VMC 1e-32 and 1e-65, fault3's machines and the MIMII machine 0.05-0.4
SHIFT_P = 1e-3
#: fewer recordings than this say little of how far a later one may move: the spread between k recordings has k - 1
#: degrees of freedom, and the upper end of its 95 % interval is 40 times the estimate with 3 recordings, 14 with 4,
#: 8 with 5, 3 with 10
FEW_RECORDINGS = 5


@dataclass(frozen=True)
class RecordingSpread:
    """One machine's held-out scores as recordings: their means, the variance between and within them."""

    means: np.ndarray
    sizes: np.ndarray
    between: float
    within: float

    @classmethod
    def of(cls, scores: np.ndarray, groups: np.ndarray) -> RecordingSpread:
        labels, inverse = np.unique(groups, return_inverse=True)
        sizes = np.bincount(inverse)
        means = np.bincount(inverse, weights=scores) / sizes
        within = float(np.sum((scores - means[inverse]) ** 2)) / max(len(scores) - len(labels), 1)
        between = (max(0.0, float(np.var(means, ddof=1)) - within * float(np.mean(1.0 / sizes)))
                   if len(labels) > 1 else 0.0)
        return cls(means, sizes, between, within)

    def point(self, center: float, between_weight: float, within_weight: float, rate: float) -> float:
        """`center` + Student's t (Satterthwaite's degrees of freedom) times the predictive spread."""
        a, b = self.between * between_weight, self.within * within_weight
        if a + b <= 0:
            return center
        count, n = len(self.means), int(self.sizes.sum())
        dof = (a + b) ** 2 / (a ** 2 / max(count - 1, 1) + b ** 2 / max(n - count, 1))
        return float(center + stats.t.ppf(1 - rate, dof) * math.sqrt(a + b))


@dataclass(frozen=True)
class RecordingShift:
    """How much a machine's held-out normal scores move from one recording to the next (one-way ANOVA by recording).

    `between` is the share of their variance that lies between recordings (the intraclass correlation).
    """

    recordings: int
    between: float
    p_value: float

    @property
    def shifting(self) -> bool:
        """Whether the recordings differ clearly (`SHIFT_P`), the sign of a sound that wanders between recordings."""
        return self.recordings >= 3 and self.p_value < SHIFT_P

    @property
    def advised(self) -> bool:
        """Whether a learning period on site is advised: the recordings shift, or too few of them show how far."""
        return self.shifting or self.recordings < FEW_RECORDINGS

    def format(self) -> str:
        """One line: what was measured, and the advice when the recordings differ or are too few to tell."""
        if self.recordings < 2:
            seen = ("one recording, as far as its files' names and times tell: how far a later recording moves "
                    "cannot be measured")
        else:
            seen = (f"{self.recordings} recordings; {100 * self.between:.0f} % of its normal score spread lies "
                    f"between them (p={self.p_value:.2g})")
        if not self.advised:
            return seen
        if self.shifting:
            why = (": its normal sound shifts from one recording to the next. The thresholds allow for the shifts "
                   "seen so far; where it stands it may shift further")
        elif self.recordings >= 2:
            why = f": too few recordings to tell how far a later one may move (fewer than {FEW_RECORDINGS})"
        else:
            why = ""
        return (f"{seen}{why}, so a learning period on site is advised (`ssad calibrate --detector DIR --machine NAME "
                f"FILES` with recordings made there, or `ssad monitor --learn 1h`)")


def recording_shift(scores: Any, groups: Any) -> RecordingShift:
    """`RecordingShift` of one machine's held-out normal scores and their recording groups."""
    scores, groups = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    spread = RecordingSpread.of(scores, groups)
    count, sizes, within = len(spread.means), spread.sizes, spread.within
    if count < 2 or sizes.min() < 2:  # recordings of one clip cannot show a spread within them
        return RecordingShift(count, 0.0, 1.0)
    between = float(np.sum(sizes * (spread.means - scores.mean()) ** 2)) / (count - 1)  # the ANOVA's mean square
    if within <= 0:
        return RecordingShift(count, 1.0 if between > 0 else 0.0, 0.0 if between > 0 else 1.0)
    p_value = float(stats.f.sf(between / within, count - 1, len(scores) - count))
    m0 = (len(scores) - float(np.sum(sizes ** 2)) / len(scores)) / (count - 1)  # mean group size, unbalanced
    share = max(0.0, (between - within) / (between + (m0 - 1) * within))
    return RecordingShift(count, share, p_value)
