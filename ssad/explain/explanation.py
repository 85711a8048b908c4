"""Why a clip scored as it did: its score against the machine's normal clips, when, in which frequencies, what kind.

`explain_clip` reuses the detector's own path: one log-mel, and every model output of the clip and of each of
its windows from one call (`Encoder.encode`), so the clip's score is `Detector.score`'s for any scorer and
each window is scored alone by the same scorer for "when". "Where" compares the clip's band group levels and
variabilities with the machine's normal statistics (`ssad.features.bands`); "kind" is a plain-word rule on those
numbers (`ssad.explain.rules`).

An explanation never contradicts the verdict:
- a clip the detector does not flag is "within normal range" (its kind, and its whole summary): no fault is
  claimed, so no time span is singled out (`when` is the whole clip). Its `where` still lists the ranges that
  departed most from the machine's normal clips, as observations: an operator watching a machine drift towards a
  fault wants to see which frequencies move before the score crosses the threshold. The one-line summary leaves
  them out, and `ssad explain`'s text calls them observations;
- a flagged clip changed throughout unless part of it stands out: windows whose scores stand out from the clip's
  other windows (`time_spans`), or, when none does, the frames where its strongest frequency range departs from
  the machine's normal clips (`band_time_spans`), unless those cover most of the clip. No span is reported at
  windows scoring lower than a window left out (`consistent_spans`). Window scores are compared with each other,
  not with the clip's threshold: a window is scored as a clip of its own (`Encoder.encode`), noisier than the
  pooled clip and, for a classifier pooling its windows' spread, carrying the whole clip's spread, so on synthetic
  seed 1 98 % of the windows of normal test clips score above their clip's threshold; "every window above the
  threshold" would call every flagged clip "throughout".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssad.core.errors import SsadError
from ssad.explain.findings import FrequencyRange, TimeSpan
from ssad.explain.rules import UNSPECIFIED, WITHIN_NORMAL, bands_of, kind_of_change
from ssad.features.bands import MEASURES, MachineBands, band_groups, band_statistics
from ssad.features.logmel import window_starts
from ssad.scoring import select_input

if TYPE_CHECKING:
    from ssad.detector import Detector
    from ssad.encoder import ClipInput

__all__ = ["Evidence", "Explanation", "FrequencyRange", "TimeSpan", "consistent_spans", "explain", "explain_clip", "format_hz"]

#: a band group departs from normal when a measure is this many normal spreads away; "peaks" vary more from
#: clip to clip than a normal spread says (a normal clip's loudest 1 % of frames is itself a rare event)
WHERE_Z = {"level": 3.0, "variability": 3.0, "peaks": 4.0}
#: a flagged clip with no group beyond WHERE_Z reports its strongest group if it reaches this share of it
FLAGGED_SHARE = 0.6
#: ranges and spans reported, strongest first
MAX_RANGES = 3
MAX_SPANS = 3
#: a window stands out when its score rose by this share of the way from the clip's median to its peak
SPAN_SHARE = 0.5
#: ...and only when that peak sits this many robust standard deviations above the median; else "throughout"
PEAK_SPREADS = 2.0
#: when no window stands out, the strongest frequency range marks the span (`band_time_spans`): its level over
#: this many seconds departing from the machine's normal level by this many normal spreads of such a level, or its
#: frames louder than the machine's normal loudest frames by this many normal spreads of their height; marks
#: closer than this are one span; a spread below the floor (dB) is raised to it. Chosen on synthetic seed 1.
LEVEL_SECONDS = 0.5
LEVEL_SPREADS = 3.0
EVENT_SPREADS = 1.0
EVENT_GAP_S = 2.0
BAND_SPAN_FLOOR_DB = 0.25
#: marked frames covering more than this share of the clip are no span: the change is throughout
MOST_OF_CLIP = 0.8
NO_BANDS_NOTE = ("this detector was saved without normal band statistics, so frequency ranges cannot be "
                 "compared with normal; save it again with `ssad detector` (or `ssad evaluate`) to get them")


@dataclass
class Evidence:
    """The numbers behind an explanation, for the picture: not part of the JSON."""

    log_mel: np.ndarray
    band_edges_hz: np.ndarray
    frame_seconds: float
    window_centres_s: np.ndarray
    window_scores: np.ndarray
    normal_scores: np.ndarray


@dataclass
class Explanation:
    """A clip's score, threshold, decision and percentile among the machine's normal clips, and why."""

    path: str
    machine: str
    scorer: str
    score: float
    threshold: float
    decision: int
    percentile: float
    when: list[TimeSpan]
    where: list[FrequencyRange]
    kind: str
    note: str | None = None
    evidence: Evidence | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (without the evidence arrays), plus a one-line summary."""
        data = {k: v for k, v in asdict(self).items() if k != "evidence"}
        data["summary"] = self.summary()
        return data

    def alert_fields(self, offset_s: float = 0.0) -> dict[str, Any]:
        """`when` (shifted by `offset_s`, e.g. the window's start in a stream), `where` and `kind` for an alert."""
        when = [{**asdict(span), "start_s": round(span.start_s + offset_s, 3), "end_s": round(span.end_s + offset_s, 3)}
                for span in self.when]
        return {"when": when, "where": [asdict(r) for r in self.where], "kind": self.kind}

    def summary(self, offset_s: float = 0.0) -> str:
        """One line an operator reads: '2.1-2.6 kHz +9 dB, 12.4-13.0 s, new narrowband line', or 'within normal range'."""
        if self.kind == WITHIN_NORMAL:
            return WITHIN_NORMAL
        parts = [" ".join([format_hz(r.low_hz, r.high_hz), *([r.measure] if r.measure != "level" else []),
                           f"{r.change_db:+.0f} dB"]) for r in self.where[:1]]
        parts += ["throughout" if s.whole_clip else f"{s.start_s + offset_s:.1f}-{s.end_s + offset_s:.1f} s"
                  for s in self.when[:1]]
        return ", ".join([*parts, self.kind])

    def verdict(self) -> str:
        """'ANOMALY' or 'normal', with score, threshold and percentile, for the command line."""
        word, sign = ("ANOMALY", ">") if self.decision else ("normal", "<=")
        return (f"{self.machine}: score {self.score:.4g} {sign} {self.threshold:.4g}, {word} (more unusual than "
                f"{self.percentile:.1f} % of its normal clips)")


def format_hz(low: float, high: float) -> str:
    """'2.1-2.6 kHz', or '120-480 Hz' and '1968-2021 Hz' where tenths of a kHz would hide the range."""
    if high >= 1000 and high - low >= 200:
        return f"{low / 1000:.1f}-{high / 1000:.1f} kHz"
    return f"{low:.0f}-{high:.0f} Hz"


def _percentile(score: float, normal: np.ndarray) -> float:
    """Share (%) of the normal scores below `score`, ties counted half."""
    if normal.size == 0:
        return float("nan")
    return float(100.0 * (np.sum(normal < score) + 0.5 * np.sum(normal == score)) / normal.size)


def time_spans(window_scores: np.ndarray, starts_s: np.ndarray, ends_s: np.ndarray, duration_s: float) -> list[TimeSpan]:
    """Runs of windows whose scores rose most above the clip's median, strongest first; the whole clip if none stands out.

    A run's span is what all its windows share (a short event raises every window that holds it), or from the
    middle of its first window to the middle of its last when they share nothing.
    """
    scores = np.asarray(window_scores, dtype=np.float64)
    median, peak = float(np.median(scores)), float(scores.max())
    robust_sd = 1.4826 * float(np.median(np.abs(scores - median)))
    if len(scores) < 3 or peak - median <= PEAK_SPREADS * max(robust_sd, 1e-9 * max(1.0, abs(median))):
        return [TimeSpan(0.0, round(duration_s, 3), peak, whole_clip=True)]
    raised = scores >= median + SPAN_SHARE * (peak - median)
    spans = []
    for run in _runs(raised):
        start, end = starts_s[run[-1]], ends_s[run[0]]
        if start >= end:
            start, end = (starts_s[run[0]] + ends_s[run[0]]) / 2, (starts_s[run[-1]] + ends_s[run[-1]]) / 2
        spans.append(TimeSpan(round(float(start), 3), round(float(min(end, duration_s)), 3), float(scores[run].max())))
    return consistent_spans(sorted(spans, key=lambda s: -s.peak_score), scores, starts_s, ends_s)


def consistent_spans(spans: list[TimeSpan], window_scores: np.ndarray, starts_s: np.ndarray,
                     ends_s: np.ndarray) -> list[TimeSpan]:
    """The first `MAX_SPANS` of `spans` (strongest first), less any that would sit at windows scoring lower than a
    window no span reported holds.

    A span's score is its `peak_score`, the highest score of a window it overlaps; the lowest-scoring span is
    dropped until every window left out scores no higher than every span kept ([] when none is left). The order
    of the spans kept is theirs.
    """
    kept = list(spans[:MAX_SPANS])
    scores, starts_s, ends_s = np.asarray(window_scores), np.asarray(starts_s), np.asarray(ends_s)
    while kept:
        held = np.zeros(len(scores), dtype=bool)
        for span in kept:
            held |= (starts_s < span.end_s) & (ends_s > span.start_s)
        weakest = min(kept, key=lambda s: s.peak_score)
        if held.all() or weakest.peak_score >= float(scores[~held].max()):
            return kept
        kept.remove(weakest)
    return []


def band_time_spans(log_mel: np.ndarray, top: FrequencyRange, normal: MachineBands, edges_hz: np.ndarray,
                    frame_s: float, window_scores: np.ndarray, starts_s: np.ndarray, ends_s: np.ndarray,
                    duration_s: float) -> list[TimeSpan]:
    """Where in the clip the strongest range departs from the machine's normal clips, strongest first; [] if nowhere
    or (nearly) everywhere.

    The window scores of a long fault rise everywhere a little, so "when" falls back on the frequencies the
    fault changed. A level change is looked for in the range's level over `LEVEL_SECONDS`, against the
    machine's normal level there (in normal frame spreads); a rise of peaks or variability in its frames louder
    than the machine's normal loudest frames (`EVENT_SPREADS` normal spreads above their normal height over the
    clip's median). Marked frames less than `EVENT_GAP_S` apart are one span; spans covering most of the clip
    (`MOST_OF_CLIP`) are no span, the change is throughout. Each span's `peak_score` is the highest score of a
    window overlapping it.
    """
    bands = bands_of(top, edges_hz)
    series = log_mel[bands].mean(axis=0)
    if top.measure == "level":
        frames = max(1, round(LEVEL_SECONDS / frame_s))
        smoothed = np.convolve(series, np.ones(frames) / frames, mode="same")
        noise = max(_normal_of_bands(normal.means["variability"], bands) / np.sqrt(frames), BAND_SPAN_FLOOR_DB)
        departure = np.sign(top.z) * (smoothed - _normal_of_bands(normal.means["level"], bands)) / noise
        marked = departure > LEVEL_SPREADS
    elif top.z > 0:
        height = series - float(np.median(series))
        spread = max(_normal_of_bands(normal.spreads["peaks"], bands), BAND_SPAN_FLOOR_DB)
        departure = (height - _normal_of_bands(normal.means["peaks"], bands)) / spread
        marked = departure > EVENT_SPREADS
    else:  # fewer or weaker events than normal: nothing to point at
        return []
    index = np.flatnonzero(marked)
    if not index.size:
        return []
    runs = np.split(index, np.flatnonzero(np.diff(index) * frame_s > EVENT_GAP_S) + 1)
    if sum(run[-1] - run[0] + 1 for run in runs) > MOST_OF_CLIP * len(series):
        return []
    runs.sort(key=lambda run: -float(departure[run].sum()))
    starts_s, ends_s, spans = np.asarray(starts_s), np.asarray(ends_s), []
    for run in runs[:MAX_SPANS]:
        start, end = float(run[0] * frame_s), float(min((run[-1] + 1) * frame_s, duration_s))
        overlapping = (starts_s < end) & (ends_s > start)
        peak = float(np.max(window_scores[overlapping])) if overlapping.any() else float(np.max(window_scores))
        spans.append(TimeSpan(round(start, 3), round(end, 3), peak))
    return spans


def _normal_of_bands(per_group: np.ndarray, bands: slice) -> float:
    """A machine's normal statistic averaged over these mel bands (single bands are the first groups of `band_groups`)."""
    return float(np.mean(per_group[bands]))


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """The runs of consecutive indices where `mask` holds."""
    index = np.flatnonzero(mask)
    return np.split(index, np.flatnonzero(np.diff(index) > 1) + 1) if index.size else []


def frequency_ranges(statistics: dict[str, np.ndarray], normal: MachineBands, groups: np.ndarray,
                     edges_hz: np.ndarray, share: float = 1.0) -> list[FrequencyRange]:
    """Band groups with a measure beyond `share` of its `WHERE_Z`, strongest (relative to it) first, in Hz.

    A group overlapping a stronger one is left out; one touching a stronger range of the same measure and sign
    widens it (the change, z and normal level stay the stronger group's).
    """
    z = normal.z_scores(statistics)
    strength = {(m, g): abs(z[m][g]) / WHERE_Z[m] for m in MEASURES for g in range(len(groups))}
    kept: list[_Bands] = []
    taken = np.zeros(len(edges_hz) - 1, dtype=bool)
    for (measure, g), ratio in sorted(strength.items(), key=lambda item: -item[1]):
        first, end = (int(b) for b in groups[g])
        if ratio < share:
            break
        if not taken[first:end].any():
            taken[first:end] = True
            kept.append(_Bands(measure, first, end, g))
    merged: list[_Bands] = []
    for bands in sorted(kept, key=lambda b: b.first):
        last = merged[-1] if merged else None
        if last and last.end == bands.first and last.measure == bands.measure and \
                np.sign(z[last.measure][last.group]) == np.sign(z[bands.measure][bands.group]):
            last.end = bands.end
            last.group = max(last.group, bands.group, key=lambda g: strength[(last.measure, g)])
        else:
            merged.append(bands)
    merged.sort(key=lambda b: -strength[(b.measure, b.group)])
    return [FrequencyRange(round(float(edges_hz[b.first]), 1), round(float(edges_hz[b.end]), 1),
                           round(float(statistics[b.measure][b.group] - normal.means[b.measure][b.group]), 2),
                           round(float(z[b.measure][b.group]), 2), b.measure,
                           round(float(normal.means[b.measure][b.group]), 2)) for b in merged[:MAX_RANGES]]


@dataclass
class _Bands:
    """A range being built: mel bands first..end (exclusive), and the group whose departure it reports."""

    measure: str
    first: int
    end: int
    group: int


@torch.inference_mode()
def explain(detector: Detector, clip: ClipInput, machine: str | None = None, *, scorer: str | None = None,
            sample_rate: int | None = None, flagged: bool | None = None) -> Explanation:
    """Score one recording with a detector and say why: when in the clip, in which frequencies, what kind of change.

    The machine comes from the file name unless `machine` is given (as `Detector.score`); `flagged` overrides the
    decision.
    """
    name = detector.scorer_name(scorer)
    (machine,) = detector.machines_for([clip], machine)
    if machine not in detector.machine_ids or machine not in detector.scorers[name].ids_:
        raise SsadError(f"machine {machine!r} unknown to this detector's {name} scorer; it knows "
                        f"{detector.scorers[name].ids_}")
    return explain_clip(detector, clip, machine, name, sample_rate=sample_rate, flagged=flagged)


def explain_clip(detector: Detector, clip: ClipInput, machine: str, scorer_name: str, *,
                 sample_rate: int | None = None, flagged: bool | None = None) -> Explanation:
    """Score one clip of a known machine with the named scorer and explain the score (see the module's docstring).

    `flagged` explains the clip as flagged (True) or normal (False) whatever its own score says, as a monitor
    does with a window of an alert its smoothed score raised; None follows the clip's own decision.
    """
    model = detector.model
    log_mel = model.log_mels([clip], sample_rate)[0]
    outputs = model.encode([log_mel], windows=True)
    scorer = detector.scorers[scorer_name]
    score = float(scorer.score(select_input(scorer, outputs.clips), [machine])[0])
    window_scores = np.asarray(scorer.score(select_input(scorer, outputs.windows), [machine] * outputs.window_counts[0]),
                               dtype=np.float64)
    threshold = float(detector.thresholds[scorer_name].threshold_[machine])
    normal_scores = np.asarray(scorer.train_scores_)[np.asarray(scorer.train_ids_) == machine]
    decision = int(score > threshold)
    flagged = bool(decision) if flagged is None else flagged

    features = model.log_mel
    log_mel = log_mel.cpu().numpy().astype(np.float64)
    frame_s = features.frame_seconds()
    duration = features.num_samples(log_mel.shape[1]) / features.sample_rate  # within a frame of the clip's end
    starts = np.asarray(window_starts(log_mel.shape[1], model.window_frames, model.window_hop,
                                      to_end=model.window_to_end)) * frame_s
    ends = np.minimum(starts + model.window_frames * frame_s, duration)
    throughout = [TimeSpan(0.0, round(duration, 3), float(window_scores.max()), whole_clip=True)]
    when = time_spans(window_scores, starts, ends, duration) if flagged else throughout
    edges = features.band_edges_hz()
    evidence = Evidence(log_mel, edges, frame_s, (starts + ends) / 2, window_scores, normal_scores)

    normal = detector.normal_bands.of(machine) if detector.normal_bands is not None else None
    groups = band_groups(log_mel.shape[0])
    where: list[FrequencyRange] = []
    kind, note = (UNSPECIFIED if flagged else WITHIN_NORMAL), None
    if detector.normal_bands is None:
        note = NO_BANDS_NOTE
    elif normal is None:
        note = (f"no normal band statistics for {machine} (its clips were added before ssad kept them), so no "
                f"frequency ranges; save the detector again with `ssad detector` to get them")
    elif normal.means["level"].shape != (len(groups),):
        note = f"the detector's normal band statistics do not fit this model's {log_mel.shape[0]} mel bands"
    else:
        statistics = band_statistics(log_mel)
        where = frequency_ranges(statistics, normal, groups, edges)
        if flagged:
            if not where:  # say where it departs most, if anywhere near
                where = frequency_ranges(statistics, normal, groups, edges, share=FLAGGED_SHARE)[:1]
            if where and when[0].whole_clip:
                spans = band_time_spans(log_mel, where[0], normal, edges, frame_s, window_scores, starts, ends, duration)
                when = consistent_spans(spans, window_scores, starts, ends) or when
            kind = kind_of_change(statistics, normal, groups, where, when, log_mel, edges)
    label = str(clip) if isinstance(clip, (str, Path)) else "waveform"
    return Explanation(label, machine, scorer_name, score, threshold, decision, _percentile(score, normal_scores),
                       when, where, kind, note, evidence)
