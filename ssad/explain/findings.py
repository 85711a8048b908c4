"""What an explanation finds: the time spans that raised a score and the frequency ranges that departed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrequencyRange", "TimeSpan"]


@dataclass
class TimeSpan:
    """Seconds into the clip (or stream) where the window scores rose most; `peak_score` is the highest window's."""

    start_s: float
    end_s: float
    peak_score: float
    whole_clip: bool = False


@dataclass
class FrequencyRange:
    """Frequencies whose level, variability or peaks depart from the machine's normal clips.

    `measure` says which (`ssad.features.bands.MEASURES`); `change_db` is the clip's change from the machine's
    normal mean of it (`normal_db`) in dB, and `z` the change in normal spreads.
    """

    low_hz: float
    high_hz: float
    change_db: float
    z: float
    measure: str
    normal_db: float
