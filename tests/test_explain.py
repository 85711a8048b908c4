"""Explanations: `ssad explain` (JSON, text, picture), the detector's normal band statistics, the rules, the monitor's
alert lines, and experiments/explain_accuracy.py on a hand-written faults.csv."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssad.explain.explanation import (
    FrequencyRange,
    TimeSpan,
    band_time_spans,
    consistent_spans,
    explain,
    frequency_ranges,
    time_spans,
)
from ssad.explain.rules import (
    BROADBAND_DROP,
    BROADBAND_RISE,
    IMPULSIVE,
    MOVED_LINE,
    NEW_LINE,
    RHYTHM,
    UNSPECIFIED,
    WITHIN_NORMAL,
    kind_of_change,
    tonal_rise,
)
from ssad.features import LogMel, window_starts
from ssad.features.bands import MEASURES, BandProfile, MachineBands, band_groups, band_statistics, output_name

REPO = Path(__file__).resolve().parents[1]
SSAD = [sys.executable, "-m", "ssad.cli"]
N_MELS = 64
EDGES = LogMel(n_mels=N_MELS).band_edges_hz()
GROUPS = band_groups(N_MELS)
WHOLE = [TimeSpan(0.0, 10.0, 1.0, whole_clip=True)]


def test_band_edges_are_the_mel_filters_in_hz() -> None:
    features = LogMel(n_mels=N_MELS)
    assert EDGES.shape == (N_MELS + 1,) and EDGES[0] == 0.0 and EDGES[-1] == 8000.0
    assert np.all(np.diff(EDGES) > 0)
    # each filter peaks inside its band (the filterbank's own bins, so within one FFT bin)
    bin_hz = features.sample_rate / features.n_fft
    peaks = features.mel_filters.argmax(dim=0).numpy() * bin_hz
    wide = np.diff(EDGES) > 2 * bin_hz
    assert np.all((peaks[wide] >= EDGES[:-1][wide] - bin_hz) & (peaks[wide] <= EDGES[1:][wide] + bin_hz))


def test_band_profile_fits_refits_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    outputs = {output_name(m): rng.normal(size=(20, 8)) for m in MEASURES}
    ids = ["a"] * 10 + ["b"] * 10
    profile = BandProfile.from_outputs(outputs, ids)
    np.testing.assert_allclose(profile.of("b").means["peaks"], outputs["band_peaks"][10:].mean(axis=0))
    refit = profile.refit("c", {name: value[:5] + 3 for name, value in outputs.items()})
    assert refit.machines == ["a", "b", "c"] and refit.of("c").clips == 5
    np.testing.assert_allclose(refit.of("a").spreads["level"], profile.of("a").spreads["level"])
    refit.save(tmp_path / "bands.npz")
    again = BandProfile.load(tmp_path / "bands.npz")
    assert again.machines == refit.machines
    np.testing.assert_allclose(again.of("c").means["variability"], refit.of("c").means["variability"])
    assert BandProfile.load(tmp_path / "missing.npz") is None
    assert BandProfile.from_outputs({"embedding": np.zeros((20, 4))}, ids) is None


def test_band_groups_average_their_bands() -> None:
    assert GROUPS.shape == (64 + 16 + 4, 2) and tuple(GROUPS[64]) == (0, 4) and tuple(GROUPS[-1]) == (48, 64)
    log_mel = np.zeros((N_MELS, 100))
    log_mel[8:12, ::2] = 4.0
    log_mel[40, :5] = 10.0  # a few loud frames
    statistics = band_statistics(log_mel)
    assert statistics["level"][8] == 2.0 and statistics["variability"][8] == 2.0 and statistics["level"][64 + 2] == 2.0
    assert statistics["level"][64 + 16] == 0.5 and statistics["variability"][64 + 16] == 0.5  # a quarter of 0-15
    assert statistics["peaks"][40] == 10.0 and statistics["peaks"][30] == 0.0  # loudest frames above the median
    assert statistics["peaks"][8] == 2.0  # half the frames loud: the median rose with them


def _normal(**changes: tuple[int, float]) -> tuple[MachineBands, dict[str, np.ndarray]]:
    """A machine whose every statistic is 0 +- 1 dB, and a clip with `measure=(group, change)` changes."""
    zeros = {m: np.zeros(len(GROUPS)) for m in MEASURES}
    clip = {m: np.zeros(len(GROUPS)) for m in MEASURES}
    for key, (group, change) in changes.items():
        clip[key.rstrip("_0123456789")][group] = change
    return MachineBands(zeros, {m: np.ones(len(GROUPS)) for m in MEASURES}, 30), clip


def test_the_strongest_group_wins_and_hides_the_groups_it_overlaps() -> None:
    # band 30 alone, the group of bands 28-31 overlapping it, the group of bands 48-63
    normal, clip = _normal(level=(30, 8.0), level_2=(64 + 7, 4.0), peaks=(64 + 16 + 3, 5.0))
    ranges = frequency_ranges(clip, normal, GROUPS, EDGES)
    assert [(r.low_hz, r.high_hz, r.change_db, r.z, r.measure) for r in ranges] == [
        (round(EDGES[30], 1), round(EDGES[31], 1), 8.0, 8.0, "level"),
        (round(EDGES[48], 1), 8000.0, 5.0, 5.0, "peaks"),
    ]
    normal, clip = _normal(peaks=(20, 9.0), peaks_2=(21, 5.0), level=(22, 4.0))
    (merged, level) = frequency_ranges(clip, normal, GROUPS, EDGES)  # bands 20 and 21 touch: one range
    assert (merged.low_hz, merged.high_hz, merged.z, merged.measure) == (round(EDGES[20], 1), round(EDGES[22], 1),
                                                                         9.0, "peaks")
    assert (level.low_hz, level.measure) == (round(EDGES[22], 1), "level")  # touching, but another measure
    normal, clip = _normal(level=(30, 2.5), peaks=(3, 3.5))  # each below its measure's threshold
    assert frequency_ranges(clip, normal, GROUPS, EDGES) == []
    weak = frequency_ranges(clip, normal, GROUPS, EDGES, share=0.6)  # what a flagged clip falls back on
    assert [(r.measure, r.z) for r in weak] == [("peaks", 3.5), ("level", 2.5)]  # 3.5 / 4 before 2.5 / 3


def test_time_spans_find_a_burst_and_say_throughout_for_a_flat_curve() -> None:
    starts = np.arange(9.0)  # windows of 2 s every 1 s
    ends = starts + 2.0
    burst = np.ones(9)
    burst[[4, 5]] = 10.0  # both windows that hold 5-6 s
    (span,) = time_spans(burst, starts, ends, 10.0)
    assert (span.start_s, span.end_s, span.whole_clip) == (5.0, 6.0, False)
    long = np.ones(9)
    long[1:5] = 10.0  # windows 1-4 share nothing: from the middle of the first to the middle of the last
    assert [(s.start_s, s.end_s) for s in time_spans(long, starts, ends, 10.0)] == [(2.0, 5.0)]
    flat = time_spans(np.full(9, 3.0) + 0.01 * np.arange(9), starts, ends, 10.0)
    assert len(flat) == 1 and flat[0].whole_clip and flat[0].end_s == 10.0


def test_no_span_sits_at_windows_scoring_lower_than_a_window_left_out() -> None:
    starts = np.arange(9.0)
    ends = starts + 2.0
    scores = np.array([30.0, 31.0, 36.0, 35.0, 29.0, 28.0, 30.0, 33.0, 31.0])
    spans = [TimeSpan(3.0, 3.1, 36.0), TimeSpan(8.5, 8.6, 33.0), TimeSpan(5.6, 5.7, 29.0)]  # the third: at 28-29
    kept = consistent_spans(spans, scores, starts, ends)
    assert [s.peak_score for s in kept] == [36.0, 33.0]  # 29 < 31 and 30, scored by windows no span holds
    held = np.zeros(9, dtype=bool)
    for span in kept:
        held |= (starts < span.end_s) & (ends > span.start_s)
    assert min(s.peak_score for s in kept) >= scores[~held].max()
    assert consistent_spans([TimeSpan(5.6, 5.7, 29.0)], scores, starts, ends) == []  # none left: the caller's whole clip
    four_runs = np.array([9.0, 1.0, 8.0, 1.0, 7.0, 1.0, 6.5, 1.0, 1.0])  # four raised runs, at most three spans
    spans = time_spans(four_runs, starts, ends, 10.0)
    assert len(spans) <= 3 and [s.peak_score for s in spans] == sorted((s.peak_score for s in spans), reverse=True)
    assert min(s.peak_score for s in spans) > 6.5 or len(spans) < 3


def _range(low: int, high: int, z: float, measure: str = "level", normal_db: float = 0.0) -> FrequencyRange:
    return FrequencyRange(float(EDGES[low]), float(EDGES[high]), z, z, measure, normal_db)


def test_band_time_spans_follow_the_strongest_range_when_no_window_stands_out() -> None:
    frames, frame_s = 100, 0.1  # a 10-s clip
    rng = np.random.default_rng(0)
    log_mel = rng.normal(0.0, 0.5, (N_MELS, frames))
    log_mel[10:14, 30:50] -= 6.0  # a 2-s drop in bands 10-13 only (a blockage)
    normal, _ = _normal()  # every band's level 0 dB, varying 1 dB over frames
    starts = np.arange(0.0, 9.0)
    ends, scores = starts + 2.0, np.linspace(1.0, 1.1, 9)
    (span,) = band_time_spans(log_mel, _range(10, 14, -4.0), normal, EDGES, frame_s, scores, starts, ends, 10.0)
    assert 2.7 <= span.start_s <= 3.1 and 4.9 <= span.end_s <= 5.3
    assert span.peak_score == scores[(starts < span.end_s) & (ends > span.start_s)].max()
    assert band_time_spans(log_mel, _range(10, 14, 4.0), normal, EDGES, frame_s, scores, starts, ends, 10.0) == []
    log_mel[10:14, 30:50] += 6.0
    log_mel[10:14, 5:95] -= 6.0  # the drop covers most of the clip: throughout, no span
    assert band_time_spans(log_mel, _range(10, 14, -4.0), normal, EDGES, frame_s, scores, starts, ends, 10.0) == []
    clicks = rng.normal(0.0, 0.5, (N_MELS, frames))
    clicks[40:44, 3:100:7] += 12.0  # loud clicks every 0.7 s all through the clip: throughout
    peaks = _range(40, 44, 8.0, "peaks", 1.0)
    assert band_time_spans(clicks, peaks, normal, EDGES, frame_s, scores, starts, ends, 10.0) == []
    clicks[40:44, 3:100:7] -= 12.0
    clicks[40:44, 60:75:4] += 12.0  # a crackle from 6 to 7.5 s
    (span,) = band_time_spans(clicks, peaks, normal, EDGES, frame_s, scores, starts, ends, 10.0)
    assert 5.9 <= span.start_s and span.end_s <= 7.6


def _kind(where: list[FrequencyRange], *, level: float | np.ndarray = 0.0, normal_level: np.ndarray | None = None,
          variability_db: float = 1.0, when: list[TimeSpan] = WHOLE, log_mel: np.ndarray | None = None) -> str:
    """The rules' kind for a clip whose single bands' levels are `level` dB against a normal spectrum `normal_level`."""
    bands_level = np.broadcast_to(np.asarray(level, dtype=float), (N_MELS,))
    normal_bands = np.zeros(N_MELS) if normal_level is None else normal_level
    group_level = np.array([bands_level[a:b].mean() for a, b in GROUPS])
    normal_group = np.array([normal_bands[a:b].mean() for a, b in GROUPS])
    zeros = np.zeros(len(GROUPS))
    normal = MachineBands({"level": normal_group, "variability": np.full(len(GROUPS), variability_db), "peaks": zeros},
                          {m: np.ones(len(GROUPS)) for m in MEASURES}, 30)
    statistics = {"level": normal_group + group_level, "variability": zeros + variability_db, "peaks": zeros}
    return kind_of_change(statistics, normal, GROUPS, where, when,
                          np.zeros((N_MELS, 100)) if log_mel is None else log_mel, EDGES)


def test_rules_name_each_kind() -> None:
    assert _kind([], level=4.0) == BROADBAND_RISE
    assert _kind([], level=-4.0) == BROADBAND_DROP
    assert _kind([_range(16, 64, 4.0)]) == BROADBAND_RISE
    line = [_range(40, 41, 6.0)]
    assert _kind(line) == NEW_LINE
    assert _kind([_range(0, 1, 2.5)]) == NEW_LINE  # the lowest mel band spans octaves in Hz but is one band
    moved = [*line, _range(36, 37, -4.0)]
    assert _kind(moved) == MOVED_LINE
    assert _kind([_range(16, 64, 6.0, "peaks", 4.0)]) == IMPULSIVE  # far above anything normal
    assert _kind([_range(20, 21, 4.0, "peaks", 4.0)]) == NEW_LINE  # a weaker rise in one band: a sound coming and going
    wider = [_range(20, 30, 4.0, "peaks", 4.0)]
    assert _kind(wider, variability_db=3.0) == RHYTHM  # on a machine made of events (a valve): its events changed
    assert _kind(wider, variability_db=1.0) == IMPULSIVE  # on a steady machine (a fan): new events
    assert _kind([_range(20, 30, -4.0, "peaks", 4.0)]) == RHYTHM  # its events weaker or fewer
    bursty = np.zeros((N_MELS, 100))
    bursty[20:30, 50:53] = 20.0
    spread = [_range(20, 30, 5.0, "variability")]
    assert _kind(spread, log_mel=bursty) == IMPULSIVE
    rhythm = np.zeros((N_MELS, 100))
    rhythm[20:30, ::2] = 3.0
    assert _kind(spread, log_mel=rhythm) == RHYTHM
    assert _kind([], when=[TimeSpan(2.0, 3.0, 5.0)]) == RHYTHM
    assert _kind([]) == UNSPECIFIED
    assert _kind([_range(20, 30, 2.5)]) == UNSPECIFIED  # neither narrow nor an octave: no reading


def test_a_rise_on_the_machines_lines_is_tonal_not_broadband() -> None:
    lines = np.zeros(N_MELS)
    lines[2::4] = 8.0  # a machine with a line in every fourth band
    on_lines = np.where(lines > 0, 12.0, 0.0)  # its lines 12 dB up, the noise between them as it was
    assert tonal_rise(on_lines, lines) and not tonal_rise(np.full(N_MELS, 3.0), lines)
    assert not tonal_rise(on_lines, np.zeros(N_MELS))  # no lines to sit on
    assert _kind([], level=on_lines, normal_level=lines) == NEW_LINE  # every wide group rose 3 dB, on the lines
    assert _kind([], level=3.0, normal_level=lines) == BROADBAND_RISE  # 3 dB everywhere
    assert _kind([_range(8, 64, 3.0)], level=on_lines, normal_level=lines) == NEW_LINE
    assert _kind([_range(2, 3, -3.0)], normal_level=lines) == MOVED_LINE  # one of its lines dropped: it left its place
    assert _kind([_range(3, 4, -3.0)], normal_level=lines) == UNSPECIFIED  # a drop between the lines


def _with_threshold(detector, monkeypatch: pytest.MonkeyPatch, machine: str, value: float) -> None:
    """Every scorer's threshold for `machine` set to `value` for one test."""
    for threshold in detector.thresholds.values():
        monkeypatch.setitem(threshold.threshold_, machine, value)


def test_a_clip_judged_normal_claims_no_fault(classifier_detector, tiny_root: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    clip, machine = _test_clips(tiny_root)[1], "fan/id_00"  # an anomalous clip, judged normal by a high threshold
    _with_threshold(classifier_detector, monkeypatch, machine, 1e12)
    explanation = explain(classifier_detector, clip, machine)
    assert explanation.decision == 0 and explanation.kind == WITHIN_NORMAL
    assert explanation.summary() == WITHIN_NORMAL and explanation.as_dict()["summary"] == WITHIN_NORMAL
    assert [s.whole_clip for s in explanation.when] == [True]  # no span singled out
    assert all(r.measure in MEASURES for r in explanation.where)  # observations may stay
    alerting = explain(classifier_detector, clip, machine, flagged=True)  # a monitor's alert: explained as a fault
    assert alerting.decision == 0 and alerting.kind != WITHIN_NORMAL and alerting.summary() != WITHIN_NORMAL


def test_a_flagged_clip_names_a_kind_and_its_windows(classifier_detector, tiny_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clip, machine = _test_clips(tiny_root)[0], "fan/id_00"  # a normal clip, flagged by a threshold below every score
    _with_threshold(classifier_detector, monkeypatch, machine, -1e12)
    explanation = explain(classifier_detector, clip, machine)
    assert explanation.decision == 1 and explanation.kind not in (WITHIN_NORMAL, "")
    assert explanation.summary().endswith(explanation.kind) and explanation.when
    scores = explanation.evidence.window_scores
    assert all(span.peak_score <= scores.max() for span in explanation.when)


def test_a_window_ending_at_the_clip_end_is_explained_where_it_lies(classifier_detector, tiny_root: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clip, machine = _test_clips(tiny_root)[0], "fan/id_00"
    monkeypatch.setattr(classifier_detector.model, "window_to_end", True)  # as models saved from now on
    _with_threshold(classifier_detector, monkeypatch, machine, -1e12)
    evidence = explain(classifier_detector, clip, machine).evidence
    features, frame_s, frames = classifier_detector.model.log_mel, evidence.frame_seconds, evidence.log_mel.shape[1]
    duration = features.num_samples(frames) / features.sample_rate
    assert len(evidence.window_scores) == len(window_starts(frames, 16, 8, to_end=True)) == 7  # 63 frames: 0..40, 47
    assert evidence.window_centres_s[-2] == pytest.approx(48 * frame_s)  # frames 40-55
    assert evidence.window_centres_s[-1] == pytest.approx((47 * frame_s + duration) / 2)  # frames 47-62: to the end


class _ScriptedKinds:
    """Stands in for `ssad.explain.explanation.explain`: the real explanation, with the kinds of a script in turn."""

    def __init__(self, explain, kinds: list[str]) -> None:
        self.explain, self.kinds, self.calls = explain, iter(kinds), []

    def __call__(self, *args, **kwargs):
        import dataclasses

        self.calls.append(kwargs.get("flagged"))
        return dataclasses.replace(self.explain(*args, **kwargs), kind=next(self.kinds))


def test_the_monitor_settles_one_kind_per_alert(classifier_detector, tiny_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile as sf

    from ssad.field.monitor import Monitor, MonitorSettings
    from ssad.field.sources import Chunk

    machine = "fan/id_00"
    wave = np.concatenate([sf.read(c, dtype="float32")[0] for c in _test_clips(tiny_root)] * 2)  # 8 s
    threshold = classifier_detector.thresholds[classifier_detector.default_scorer]
    monkeypatch.setitem(threshold.threshold_, machine, -1e12)  # every window above it: an alert
    script = [UNSPECIFIED, IMPULSIVE, NEW_LINE, RHYTHM, NEW_LINE, MOVED_LINE, IMPULSIVE, RHYTHM, NEW_LINE, RHYTHM,
              IMPULSIVE, NEW_LINE, RHYTHM, IMPULSIVE]
    scripted = _ScriptedKinds(explain, script)
    monkeypatch.setattr("ssad.field.monitor.explain", scripted)
    out = io.StringIO()
    monitor = Monitor(classifier_detector, MonitorSettings(window=1.0, hop=0.5, alert_after=2, smooth_windows=1),
                      out=out)
    monitor.run([Chunk("s", machine, wave[:64000], final=False)])
    monkeypatch.setitem(threshold.threshold_, machine, 1e12)  # the alert clears...
    monitor.run([Chunk("s", machine, wave[64000:72000], final=False)])
    monkeypatch.setitem(threshold.threshold_, machine, -1e12)  # ...and a new one starts
    monitor.run([Chunk("s", machine, wave[72000:], final=True)])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    alerting = [line for line in lines if line["alert"]]
    assert scripted.calls and set(scripted.calls) == {True}  # explained as part of the alert
    events, current = [], None
    for line in lines:
        if line["alert"] and current is None:
            current = []
            events.append(current)
        if line["alert"]:
            current.append(line["kind"])
            assert line["explanation"].endswith(line["kind"])
        else:
            current = None
    assert len(events) == 2 and all(len(event) >= 2 for event in events) and len(alerting) == sum(map(len, events))
    # the first event: "unspecified" gives way to the first named kind, which stays to the end
    assert events[0] == [UNSPECIFIED] + [IMPULSIVE] * (len(events[0]) - 1)
    assert len(set(events[1])) == 1 and events[1][0] == script[len(events[0])]


@pytest.fixture(scope="module")
def explain_detector(tiny_run: Path, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector of the tiny run saved by `ssad detector`, with its normal band statistics."""
    out = tmp_path_factory.mktemp("explain") / "detector"
    subprocess.run([*SSAD, "detector", "--run", str(tiny_run), "--data", str(tiny_root), "--out", str(out), "--quiet"],
                   check=True, capture_output=True)
    return out


def _test_clips(root: Path) -> tuple[str, str]:
    return (str(sorted(root.glob("*/test/normal_*.wav"))[0]), str(sorted(root.glob("*/test/anomaly_*.wav"))[0]))


@pytest.mark.slow
def test_explain_cli_gives_json_text_and_a_picture(explain_detector: Path, tiny_root: Path, tmp_path: Path) -> None:
    normal, anomaly = _test_clips(tiny_root)
    done = subprocess.run([*SSAD, "explain", "--detector", str(explain_detector), "--json", normal, anomaly],
                          check=True, capture_output=True, text=True)
    items = json.loads(done.stdout)
    assert [Path(i["path"]).name for i in items] == [Path(normal).name, Path(anomaly).name]
    for item in items:
        assert {"score", "threshold", "decision", "percentile", "when", "where", "kind"} <= set(item)
        assert 0 <= item["percentile"] <= 100 and item["decision"] == int(item["score"] > item["threshold"])
        assert item["when"] and all(0 <= s["start_s"] < s["end_s"] <= 2.1 for s in item["when"])
        assert all(0 <= r["low_hz"] < r["high_hz"] <= 8000 for r in item["where"])
    scored = subprocess.run([*SSAD, "score", "--detector", str(explain_detector), "--json", normal, anomaly],
                            check=True, capture_output=True, text=True)
    np.testing.assert_allclose([i["score"] for i in items], [r["score"] for r in json.loads(scored.stdout)], rtol=1e-5)

    picture = tmp_path / "why.png"
    text = subprocess.run([*SSAD, "explain", "--detector", str(explain_detector), "--plot", str(picture), anomaly],
                          check=True, capture_output=True, text=True).stdout
    assert "kind:" in text and ("when:" in text) == bool(items[1]["decision"]) and str(picture) in text
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    bad = subprocess.run([*SSAD, "explain", "--detector", str(explain_detector), str(tmp_path / "nope.wav")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "nope.wav" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_detector_saved_without_band_statistics_still_explains(explain_detector: Path, tiny_root: Path,
                                                                 tmp_path: Path) -> None:
    import ssad

    old = Path(shutil.copytree(explain_detector, tmp_path / "old"))
    (old / "normal_bands.npz").unlink()
    normal, _ = _test_clips(tiny_root)
    explanation = explain(ssad.Detector.load(old), normal)
    assert explanation.where == [] and explanation.when
    assert explanation.kind == (UNSPECIFIED if explanation.decision else WITHIN_NORMAL)
    assert "without normal band statistics" in explanation.note
    text = subprocess.run([*SSAD, "explain", "--detector", str(old), normal], check=True, capture_output=True,
                          text=True).stdout
    assert "note: this detector was saved without normal band statistics" in text


@pytest.mark.slow
def test_enrolling_a_machine_keeps_its_band_statistics(explain_detector: Path, tiny_root: Path, tmp_path: Path) -> None:
    import ssad
    from ssad.detector.enrollment import enroll

    det = Path(shutil.copytree(explain_detector, tmp_path / "det"))
    enroll(det, "site-a/fan-7", [str(p) for p in sorted(tiny_root.glob("fan/train/normal_id_06_*.wav"))[:5]])
    loaded = ssad.Detector.load(det)
    assert loaded.normal_bands.of("site-a/fan-7").clips == 5
    explanation = explain(loaded, _test_clips(tiny_root)[0], "site-a/fan-7")
    assert explanation.note is None and explanation.machine == "site-a/fan-7"


@pytest.mark.slow
def test_refitting_a_machine_from_network_outputs_alone_keeps_the_detector_usable(explain_detector: Path,
                                                                                  tiny_root: Path) -> None:
    import ssad
    from ssad.detector.enrollment import refit_machine

    detector = ssad.Detector.load(explain_detector)
    clips = [str(p) for p in sorted(tiny_root.glob("fan/train/normal_id_06_*.wav"))[:5]]
    refit, _ = refit_machine(detector, "site-a/fan-7", detector.model.outputs(clips))  # no band statistics
    assert "band_level" not in refit.references.outputs and refit.normal_bands.of("site-a/fan-7") is None
    explanation = explain(refit, clips[0], "site-a/fan-7")
    assert explanation.where == [] and "no normal band statistics for site-a/fan-7" in explanation.note


@pytest.mark.slow
def test_monitor_explains_only_alerting_windows(explain_detector: Path, tiny_root: Path) -> None:
    import soundfile as sf

    import ssad
    from ssad.field.monitor import Monitor, MonitorSettings
    from ssad.field.sources import Chunk

    detector = ssad.Detector.load(explain_detector)
    machine = "fan/id_00"
    wave, _ = sf.read(_test_clips(tiny_root)[1], dtype="float32")
    out = io.StringIO()
    monitor = Monitor(detector, MonitorSettings(window=1.0, hop=0.5, alert_after=2, smooth_windows=1), out=out)
    thresholds = detector.thresholds[detector.default_scorer].threshold_
    thresholds[machine] = -np.inf  # every window above it: alerting from the second window on
    monitor.run([Chunk("clip", machine, np.concatenate([wave, wave]), final=True)])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) > 3 and not lines[0]["alert"] and lines[-1]["alert"]
    for line in lines:
        assert ("kind" in line) == line["alert"] == ("where" in line) == ("when" in line)
    last = lines[-1]
    assert all(last["start"] <= s["start_s"] < s["end_s"] <= last["start"] + 1.0 + 1e-6 for s in last["when"])
    assert isinstance(last["explanation"], str) and last["kind"] in last["explanation"]


@pytest.mark.slow
def test_explain_accuracy_reports_each_family_and_unknown_ones(explain_detector: Path, tiny_root: Path,
                                                                tmp_path: Path) -> None:
    anomalies = sorted(tiny_root.glob("fan/test/anomaly_id_00_*.wav"))[:3]
    faults = tmp_path / "faults.csv"
    with open(faults, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "machine_type", "machine_id", "family", "severity", "start_s", "end_s", "low_hz",
                         "high_hz"])
        for path, family, span, band in zip(anomalies, ["leakage", "contamination", "made_up_family"],
                                            [(0, 2), (0.5, 0.8), (0, 2)], [(0, 8000), (2000, 4000), (0, 8000)],
                                            strict=True):
            writer.writerow([path.relative_to(tiny_root), "fan", "id_00", family, 0.5, *span, *band])
    out = tmp_path / "results"
    subprocess.run([sys.executable, str(REPO / "experiments" / "explain_accuracy.py"), "--detector",
                    str(explain_detector), "--data", str(tiny_root), "--faults", str(faults), "--out", str(out),
                    "--examples", "1"], check=True, capture_output=True, text=True)
    report = (out / "explain.md").read_text()
    for family in ("leakage", "contamination", "made_up_family", "**all**"):
        assert f"| {family} | 1 |" in report or f"| {family} | 3 |" in report
    assert "Families without an expected kind in `FAMILY_KINDS` (not counted in *kind*): made_up_family" in report
    rows = list(csv.DictReader(open(out / "explain.csv")))
    assert [r["transient"] for r in rows] == ["0", "1", "0"]
    assert rows[2]["kind_hit"] == ""
