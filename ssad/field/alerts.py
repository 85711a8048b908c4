"""Per-machine smoothing of window scores and the alert rule: the smoothed score above threshold N windows running."""

from __future__ import annotations

from collections import deque

__all__ = ["SMOOTHINGS", "AlertRule", "Smoother"]

SMOOTHINGS = ("ema", "mean")


class Smoother:
    """A running smoothed score: exponential moving average (alpha = 2 / (windows + 1)) or mean of the last `windows`.

    Args:
        kind: "ema" or "mean".
        windows: the span of the average; 1 = no smoothing.
    """

    def __init__(self, kind: str = "ema", windows: int = 4) -> None:
        if kind not in SMOOTHINGS:
            msg = f"smoothing={kind!r} is not one of {', '.join(SMOOTHINGS)}"
            raise ValueError(msg)
        if windows < 1:
            msg = f"smoothing windows={windows} must be >= 1"
            raise ValueError(msg)
        self.kind = kind
        self.windows = windows
        self.alpha = 2.0 / (windows + 1)
        self._recent: deque[float] = deque(maxlen=windows)
        self.value: float | None = None

    def update(self, score: float) -> float:
        """Take one window's score; return the smoothed score."""
        if self.kind == "mean":
            self._recent.append(score)
            self.value = sum(self._recent) / len(self._recent)
        else:
            self.value = score if self.value is None else self.alpha * score + (1 - self.alpha) * self.value
        return self.value


class AlertRule:
    """Alerting while the smoothed score has stayed above the threshold for `after` consecutive windows."""

    def __init__(self, after: int = 3) -> None:
        if after < 1:
            msg = f"alert after {after} windows: must be >= 1"
            raise ValueError(msg)
        self.after = after
        self.run = 0  # consecutive windows above the threshold so far
        self.alerting = False

    def update(self, smoothed: float, threshold: float) -> bool:
        """Take one smoothed score; return True when the alert state changed (raised or cleared)."""
        self.run = self.run + 1 if smoothed > threshold else 0
        was = self.alerting
        self.alerting = self.run >= self.after
        return self.alerting != was
