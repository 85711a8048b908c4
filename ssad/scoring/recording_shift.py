"""How much a machine's normal scores move from one recording to the next, and whether a learning period on site is
advised: when they shift clearly, or when too few recordings show how far a later one may move."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["FEW_RECORDINGS", "SHIFT_P", "RecordingShift", "recording_shift"]

#: a machine's held-out normal scores differ between its recordings when a one-way ANOVA says so at this p-value
#: (3 recordings or more): lathe and VMC 1e-32 and 1e-65, fault3's machines and the MIMII machine 0.05-0.4
SHIFT_P = 1e-3
#: fewer recordings than this say little of how far a later one may move: the spread between k recordings has k - 1
#: degrees of freedom, and the upper end of its 95 % interval is 40 times the estimate with 3 recordings, 14 with 4,
#: 8 with 5, 3 with 10
FEW_RECORDINGS = 5


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
    labels, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)
    if len(labels) < 2 or sizes.min() < 2:  # recordings of one clip cannot show a spread within them
        return RecordingShift(len(labels), 0.0, 1.0)
    means = np.bincount(inverse, weights=scores) / sizes
    within = float(np.sum((scores - means[inverse]) ** 2)) / (len(scores) - len(labels))
    between = float(np.sum(sizes * (means - scores.mean()) ** 2)) / (len(labels) - 1)
    if within <= 0:
        return RecordingShift(len(labels), 1.0 if between > 0 else 0.0, 0.0 if between > 0 else 1.0)
    p_value = float(stats.f.sf(between / within, len(labels) - 1, len(scores) - len(labels)))
    m0 = (len(scores) - float(np.sum(sizes ** 2)) / len(scores)) / (len(labels) - 1)  # mean group size, unbalanced
    share = max(0.0, (between - within) / (between + (m0 - 1) * within))
    return RecordingShift(len(labels), share, p_value)
