"""What kind of change a clip shows, in plain words, from simple rules on its band group z-scores and time profile.

The rules, in order (the first that holds wins):
1. the strongest range (`where[0]`) is a level change, or there is none: a broadband level rise (drop) when
   most of the widest band groups' levels rose (dropped) together or the range spans an octave or more; a new
   narrowband line for a narrow rise of `LINE_Z` or more, a moved one when a narrow level drop sits elsewhere (the line left its
   old place);
2. the strongest range is a rise of peaks (loud frames above the median) where the machine's normal clips have
   no loud events: impulsive bursts; where they have them, or peaks fell: a changed rhythm or timing;
3. the strongest range is a variability change: impulsive bursts when its loud frames are few and short, else a
   changed rhythm or timing;
4. no range, but the window scores rose in some spans only: a changed rhythm or timing;
5. otherwise "unspecified".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ssad.explain.explanation import FrequencyRange, TimeSpan

__all__ = ["KINDS", "UNSPECIFIED", "kind_of_change"]

BROADBAND_RISE = "broadband level rise"
BROADBAND_DROP = "broadband level drop"
NEW_LINE = "new narrowband line"
MOVED_LINE = "moved narrowband line"
IMPULSIVE = "impulsive bursts"
RHYTHM = "changed rhythm or timing"
UNSPECIFIED = "unspecified"
KINDS = (BROADBAND_RISE, BROADBAND_DROP, NEW_LINE, MOVED_LINE, IMPULSIVE, RHYTHM, UNSPECIFIED)

#: a band group counts as risen (dropped) beyond this z-score
BAND_Z = 2.0
#: share of the widest band groups that must rise (drop) together for "broadband"
BROADBAND_SHARE = 0.4
#: a range is narrow when it is at most this share of an octave wide (a third of an octave)
NARROW_OCTAVES = 1.0 / 3.0
#: a narrow level rise is a line only this many normal spreads up (a weaker one is as likely chance)
LINE_Z = 3.0
#: a level change over at least this many octaves is broadband
BROADBAND_OCTAVES = 1.0
#: a machine's normal clips have loud events in a band when their peaks there reach this (dB above the median):
#: steady machines measured 5-6 dB (at most 10), cycling ones (slide rail, valve) 9-14 on the synthetic set
EVENTS_DB = 8.0
#: frames count as a burst when this many dB above the range's median frame level
BURST_DB = 6.0
#: ...and impulsive when such frames are at most this share of the clip (short peaks, not a steady change)
BURST_SHARE = 0.2


def _octaves(low_hz: float, high_hz: float) -> float:
    return float(np.log2(max(high_hz, 1.0) / max(low_hz, 1.0)))


def bands_of(r: FrequencyRange, edges_hz: np.ndarray) -> slice:
    """The mel bands a range covers."""
    first = int(np.searchsorted(edges_hz, r.low_hz, side="right")) - 1
    last = int(np.searchsorted(edges_hz, r.high_hz, side="left"))
    return slice(max(first, 0), max(last, first + 1))


def _impulsive(log_mel: np.ndarray, bands: slice) -> bool:
    """Whether the range's frame levels hold short peaks well above their median: bursts, not a steady change."""
    frames = log_mel[bands].mean(axis=0)
    loud = frames > np.median(frames) + BURST_DB
    return bool(loud.any() and loud.mean() <= BURST_SHARE)


def kind_of_change(level_z: np.ndarray, groups: np.ndarray, where: Sequence[FrequencyRange],
                   when: Sequence[TimeSpan], log_mel: np.ndarray, edges_hz: np.ndarray) -> str:
    """The kind of change (one of `KINDS`) by the module's rules; `level_z` per band group of `groups`."""
    widths = groups[:, 1] - groups[:, 0]
    widest = level_z[widths == widths.max()]
    rose, dropped = float(np.mean(widest >= BAND_Z)), float(np.mean(widest <= -BAND_Z))
    top = where[0] if where else None
    if top is None or top.measure == "level":
        if max(rose, dropped) >= BROADBAND_SHARE:
            return BROADBAND_RISE if rose >= dropped else BROADBAND_DROP
        if top is None:
            return RHYTHM if when and not when[0].whole_clip else UNSPECIFIED
        octaves = _octaves(top.low_hz, top.high_hz)
        if octaves >= BROADBAND_OCTAVES:
            return BROADBAND_RISE if top.z > 0 else BROADBAND_DROP
        if top.z >= LINE_Z and octaves <= NARROW_OCTAVES:
            moved = any(r.measure == "level" and r.z < 0 and _octaves(r.low_hz, r.high_hz) <= NARROW_OCTAVES
                        for r in where[1:])
            return MOVED_LINE if moved else NEW_LINE
        return UNSPECIFIED
    if top.measure == "peaks":
        return IMPULSIVE if top.z > 0 and top.normal_db < EVENTS_DB else RHYTHM
    if top.z > 0 and _impulsive(log_mel, bands_of(top, edges_hz)):
        return IMPULSIVE
    return RHYTHM
