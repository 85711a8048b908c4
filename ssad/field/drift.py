"""Drift: do a machine's recent window scores still follow the score distribution it was fitted (or enrolled) on?

The detector's `GammaThreshold` holds that distribution per machine: a fitted gamma, or, where no gamma fitted,
only its percentile point. With a gamma, the recent scores are tested against it (one-sample
Kolmogorov-Smirnov); without, the share of recent scores above the threshold is tested against the
1 - percentile expected (binomial). Overlapping windows share audio, so only every `every`-th score (windows
that do not overlap) enters the test, keeping its samples close to independent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from scipy import stats

from ssad.scoring.thresholds import GammaThreshold

__all__ = ["DriftState", "DriftTest"]


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

    def __init__(self, threshold: GammaThreshold, machine: str, *, windows: int = 30, alpha: float = 1e-3,
                 every: int = 1) -> None:
        if windows < 5:
            msg = f"drift windows={windows}: need at least 5 scores to test"
            raise ValueError(msg)
        if not 0 < alpha < 1:
            msg = f"drift alpha={alpha} must be between 0 and 1"
            raise ValueError(msg)
        self.gamma = (threshold.gamma_params_ or {}).get(machine)
        self.threshold = float(threshold.threshold_[machine])
        self.percentile = float(threshold.percentile)
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
        if self.gamma is not None:
            result = stats.kstest(list(self._recent), "gamma", args=tuple(self.gamma))
            self.state = DriftState(float(result.statistic), float(result.pvalue),
                                    float(result.pvalue) < self.alpha, "ks-gamma")
        else:
            above = sum(s > self.threshold for s in self._recent)
            p_value = stats.binomtest(above, len(self._recent), 1 - self.percentile).pvalue
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
