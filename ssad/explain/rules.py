"""What kind of change a flagged clip shows, in plain words, from simple rules on its band statistics.

A clip the detector does not flag is "within normal range" (`WITHIN_NORMAL`, set by the explanation): no rule runs.
For a flagged clip the rules read its strongest range (`where[0]`), in order (the first that holds wins):
1. a level change, or no range:
   - a rise (drop) over many of the widest band groups at once (`BROADBAND_SHARE`), or a level range of an octave or
     more, is broadband, unless the rise sits on the lines of the machine's normal spectrum: when the bands that
     are peaks of its normal spectrum rose by `TONAL_DB` more than the valleys between them (and more than the
     valleys rose at all), it is its narrowband lines that rose, a new narrowband line;
   - a narrow range (at most `NARROW_BANDS` mel bands, or a third of an octave) rising `LINE_Z` normal spreads or
     more is a new narrowband line, a moved one when a narrow level drop sits elsewhere (the line left its place);
     a narrow drop at a line of the machine's normal spectrum alone is a moved line too (the line left);
   - no range, but the window scores rose in some spans only: a changed rhythm or timing; else "unspecified";
2. a rise of peaks (the loudest frames above the clip's median):
   - `IMPULSE_Z` normal spreads or more: impulsive bursts, loud short events far above the machine's own;
   - a weaker rise in one or two mel bands (`NARROW_BANDS`): a new narrowband line, a narrowband sound (hiss,
     squeal, whistle) that comes and goes and so raises the loudest frames there more than the mean level;
   - a weaker, wider rise on a machine whose normal sound is a cycle of events (the widest band groups' level
     varies over a clip by `CYCLIC_DB` or more: a valve's clicks, a slide rail's strokes): a changed rhythm or
     timing of its own events; on a steady machine (a fan, a pump): impulsive bursts;
   - peaks that fell (its events weaker or fewer): a changed rhythm or timing;
3. a variability change: impulsive bursts when it rose and its loud frames are few and short, else a changed
   rhythm or timing.
The thresholds were chosen on the synthetic default set's seed 1 (`experiments/explain_accuracy.py`) and held out
on seeds 2 and 3 (experiments/results/explain.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ssad.explain.findings import FrequencyRange, TimeSpan
    from ssad.features.bands import MachineBands

__all__ = ["KINDS", "UNSPECIFIED", "WITHIN_NORMAL", "kind_of_change"]

BROADBAND_RISE = "broadband level rise"
BROADBAND_DROP = "broadband level drop"
NEW_LINE = "new narrowband line"
MOVED_LINE = "moved narrowband line"
IMPULSIVE = "impulsive bursts"
RHYTHM = "changed rhythm or timing"
UNSPECIFIED = "unspecified"
#: the answer for a clip the detector does not flag: no fault is claimed
WITHIN_NORMAL = "within normal range"
KINDS = (BROADBAND_RISE, BROADBAND_DROP, NEW_LINE, MOVED_LINE, IMPULSIVE, RHYTHM, UNSPECIFIED, WITHIN_NORMAL)

#: a band group counts as risen (dropped) beyond this z-score
BAND_Z = 2.0
#: share of the widest band groups that must rise (drop) together for "broadband"
BROADBAND_SHARE = 0.4
#: a level range is narrow when it is at most this many mel bands, or at most this share of an octave wide
NARROW_BANDS = 2
NARROW_OCTAVES = 1.0 / 3.0
#: a narrow level rise is a line from this many normal spreads up: any a flagged clip reports (its fall-back reports
#: its strongest range from 0.6 x 3 spreads, `ssad.explain.explanation.FLAGGED_SHARE`); seed 1: 3.0 -> 1.8, +3 clips
LINE_Z = 1.8
#: a level change over at least this many octaves is broadband
BROADBAND_OCTAVES = 1.0
#: a band is a peak of the machine's normal spectrum when its normal level stands this many dB above the median
#: of the `PEAK_NEIGHBOURS` bands on either side; a rise is tonal when the peaks rose this many dB more than the
#: valleys (bands at or below that median)
PEAK_DB = 1.5
PEAK_NEIGHBOURS = 3
TONAL_DB = 1.5
#: a rise of peaks of this many normal spreads is impulsive bursts whatever else holds: synthetic impacts (debris,
#: a rail's dent, a slack belt) measured 6-38, surges, moved lines and late valve clicks 3-5 (seed 1)
IMPULSE_Z = 6.0
#: a machine's normal sound is a cycle of events when its widest band groups' level varies over a clip by this
#: much (median std over frames, dB): synthetic fans and pumps 1.0-1.2, slide rails 1.9-2.4, valves 3.0-3.4
CYCLIC_DB = 1.6
#: frames count as a burst when this many dB above the range's median frame level
BURST_DB = 6.0
#: ...and impulsive when such frames are at most this share of the clip (short peaks, not a steady change)
BURST_SHARE = 0.2


def _octaves(low_hz: float, high_hz: float) -> float:
    return float(np.log2(max(high_hz, 1.0) / max(low_hz, 1.0)))


def bands_of(r: FrequencyRange, edges_hz: np.ndarray) -> slice:
    """The mel bands a range covers (its edges are band edges, rounded)."""
    first = int(np.argmin(np.abs(edges_hz - r.low_hz)))
    last = int(np.argmin(np.abs(edges_hz - r.high_hz)))
    return slice(min(first, len(edges_hz) - 2), max(last, first + 1))


def _band_count(r: FrequencyRange, edges_hz: np.ndarray) -> int:
    bands = bands_of(r, edges_hz)
    return bands.stop - bands.start


def _narrow(r: FrequencyRange, edges_hz: np.ndarray) -> bool:
    """At most `NARROW_BANDS` mel bands, or at most `NARROW_OCTAVES` wide."""
    return _band_count(r, edges_hz) <= NARROW_BANDS or _octaves(r.low_hz, r.high_hz) <= NARROW_OCTAVES


def _impulsive(log_mel: np.ndarray, bands: slice) -> bool:
    """Whether the range's frame levels hold short peaks well above their median: bursts, not a steady change."""
    frames = log_mel[bands].mean(axis=0)
    loud = frames > np.median(frames) + BURST_DB
    return bool(loud.any() and loud.mean() <= BURST_SHARE)


def tonal_rise(change_db: np.ndarray, normal_db: np.ndarray) -> bool:
    """Whether a level rise (per mel band, dB) sits on the peaks of the normal spectrum (per band, dB): its lines.

    Peaks stand `PEAK_DB` above the median of their `PEAK_NEIGHBOURS` neighbours on either side, valleys at or
    below it; the rise is tonal when the peaks rose `TONAL_DB` more than the valleys, and more than the valleys rose.
    """
    prominence = _normal_peaks(normal_db)
    peaks, valleys = prominence >= PEAK_DB, prominence <= 0.0
    if peaks.sum() < 2 or valleys.sum() < 2:
        return False
    on_peaks, between = float(change_db[peaks].mean()), float(change_db[valleys].mean())
    return on_peaks - between >= max(TONAL_DB, between)


def _normal_peaks(normal_db: np.ndarray) -> np.ndarray:
    """Which mel bands are peaks of the normal spectrum (per band, dB): `PEAK_DB` above their neighbours' median."""
    padded = np.pad(normal_db, PEAK_NEIGHBOURS, mode="edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * PEAK_NEIGHBOURS + 1), axis=-1)
    return normal_db - local


def _on_a_line(r: FrequencyRange, normal_db: np.ndarray, edges_hz: np.ndarray) -> bool:
    """Whether the range holds a peak of the machine's normal spectrum (per mel band, dB): one of its lines."""
    return bool(np.any(_normal_peaks(normal_db)[bands_of(r, edges_hz)] >= PEAK_DB))


def _cyclic(normal: MachineBands, groups: np.ndarray) -> bool:
    """Whether the machine's normal sound is a cycle of events (`CYCLIC_DB`), from its widest groups' variability."""
    widths = groups[:, 1] - groups[:, 0]
    return float(np.median(normal.means["variability"][widths == widths.max()])) >= CYCLIC_DB


def kind_of_change(statistics: dict[str, np.ndarray], normal: MachineBands, groups: np.ndarray,
                   where: Sequence[FrequencyRange], when: Sequence[TimeSpan], log_mel: np.ndarray,
                   edges_hz: np.ndarray) -> str:
    """The kind of change (one of `KINDS`) of a flagged clip by the module's rules, from its `band_statistics`."""
    top = where[0] if where else None
    if top is None or top.measure == "level":
        return _level_kind(statistics, normal, groups, where, when, edges_hz)
    if top.measure == "peaks":
        if top.z < 0:
            return RHYTHM
        if top.z >= IMPULSE_Z:
            return IMPULSIVE
        if _band_count(top, edges_hz) <= NARROW_BANDS:
            return NEW_LINE
        return RHYTHM if _cyclic(normal, groups) else IMPULSIVE
    if top.z > 0 and _impulsive(log_mel, bands_of(top, edges_hz)):
        return IMPULSIVE
    return RHYTHM


def _level_kind(statistics: dict[str, np.ndarray], normal: MachineBands, groups: np.ndarray,
                where: Sequence[FrequencyRange], when: Sequence[TimeSpan], edges_hz: np.ndarray) -> str:
    """Rule 1 of the module's docstring: a level change, or no range at all."""
    level_z = normal.z_scores(statistics)["level"]
    widths = groups[:, 1] - groups[:, 0]
    widest = level_z[widths == widths.max()]
    rose, dropped = float(np.mean(widest >= BAND_Z)), float(np.mean(widest <= -BAND_Z))
    single = widths == 1
    change = statistics["level"][single] - normal.means["level"][single]
    top = where[0] if where else None
    broad = max(rose, dropped) >= BROADBAND_SHARE
    if not broad and top is not None and _octaves(top.low_hz, top.high_hz) >= BROADBAND_OCTAVES \
            and _band_count(top, edges_hz) > NARROW_BANDS:
        broad, rose, dropped = True, float(top.z > 0), float(top.z < 0)
    if broad:
        if rose >= dropped:
            return NEW_LINE if tonal_rise(change, normal.means["level"][single]) else BROADBAND_RISE
        return BROADBAND_DROP
    if top is None:
        return RHYTHM if when and not when[0].whole_clip else UNSPECIFIED
    if top.z >= LINE_Z and _narrow(top, edges_hz):
        moved = any(r.measure == "level" and r.z < 0 and _narrow(r, edges_hz) for r in where[1:])
        return MOVED_LINE if moved else NEW_LINE
    if top.z < 0 and _narrow(top, edges_hz) and _on_a_line(top, normal.means["level"][single], edges_hz):
        return MOVED_LINE
    return UNSPECIFIED
