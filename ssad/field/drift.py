"""Drift: do a machine's recent window scores still follow the score distribution it was fitted (or enrolled) on?

The detector's `AlarmThreshold` keeps, per machine, the held-out scores of its normal clips that its threshold was
set from. With `MIN_REFERENCE` of them, the recent scores are tested against them (two-sample Kolmogorov-Smirnov);
with fewer, the share of recent scores above the threshold is tested against the false-alarm rate it aims at
(binomial). Overlapping windows share audio, so only every `every`-th score (windows that do not overlap) enters
the test, keeping its samples close to independent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from scipy import stats

from ssad.scoring.thresholds import AlarmThreshold

__all__ = ["MIN_REFERENCE", "DriftState", "DriftTest"]

#: held-out normal scores a machine needs for the two-sample test (fewer: the share above its threshold)
MIN_REFERENCE = 20


@dataclass(frozen=True)
class DriftState:
    """The last test: its statistic (KS distance, or share above threshold), p-value, and the verdict."""

    statistic: float
    p_value: float
    drifting: bool
    test: str


class DriftTest:
    """Rolling test of a machine's recent scores against its training score distribution.

    Args:
        threshold: the detector's fitted thresholds (of the scorer the monitor uses).
        machine: the machine (`type/id`).
        windows: recent scores per test; no verdict before that many.
        alpha: significance level: drift when the test's p-value is below it.
        every: keep every `every`-th score (1 = all).
    """

    def __init__(self, threshold: AlarmThreshold, machine: str, *, windows: int = 30, alpha: float = 1e-3,
                 every: int = 1) -> None:
        if windows < 5:
            msg = f"drift windows={windows}: need at least 5 scores to test"
            raise ValueError(msg)
        if not 0 < alpha < 1:
            msg = f"drift alpha={alpha} must be between 0 and 1"
            raise ValueError(msg)
        reference = getattr(threshold, "normal_scores_", {}).get(machine)
        self.reference = reference if reference is not None and len(reference) >= MIN_REFERENCE else None
        self.threshold = float(threshold.threshold_[machine])
        self.rate = threshold.rate_of(machine)
        self.alpha = alpha
        self.every = max(1, every)
        self._recent: deque[float] = deque(maxlen=windows)
        self._seen = 0
        self.state: DriftState | None = None

    def update(self, score: float) -> bool:
        """Take one window's score; return True when the verdict changed."""
        self._seen += 1
        if (self._seen - 1) % self.every:
            return False
        self._recent.append(score)
        if len(self._recent) < self._recent.maxlen:
            return False
        was = self.state.drifting if self.state else False
        if self.reference is not None:
            result = stats.ks_2samp(list(self._recent), self.reference)
            self.state = DriftState(float(result.statistic), float(result.pvalue),
                                    float(result.pvalue) < self.alpha, "ks-held-out")
        else:
            above = sum(s > self.threshold for s in self._recent)
            p_value = stats.binomtest(above, len(self._recent), self.rate).pvalue
            self.state = DriftState(above / len(self._recent), float(p_value), float(p_value) < self.alpha,
                                    "share-above-threshold")
        return self.state.drifting != was

    @property
    def windows(self) -> int:
        """Scores per test."""
        return int(self._recent.maxlen or 0)

    @property
    def drifting(self) -> bool:
        """The current verdict (False until enough scores)."""
        return bool(self.state and self.state.drifting)
