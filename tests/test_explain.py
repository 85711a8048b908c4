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

from ssad.explain.bands import MEASURES, BandProfile, MachineBands, band_groups, band_statistics, output_name
from ssad.explain.explanation import FrequencyRange, TimeSpan, band_time_spans, frequency_ranges, time_spans
from ssad.explain.rules import (
    BROADBAND_DROP,
    BROADBAND_RISE,
    IMPULSIVE,
    MOVED_LINE,
    NEW_LINE,
    RHYTHM,
    UNSPECIFIED,
    kind_of_change,
)
from ssad.features import LogMel

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


def _range(low: int, high: int, z: float, measure: str = "level", normal_db: float = 0.0) -> FrequencyRange:
    return FrequencyRange(float(EDGES[low]), float(EDGES[high]), z, z, measure, normal_db)


def test_band_time_spans_follow_the_strongest_range_when_no_window_stands_out() -> None:
    frames, frame_s = 100, 0.1  # a 10-s clip
    rng = np.random.default_rng(0)
    log_mel = rng.normal(0.0, 0.5, (N_MELS, frames))
    log_mel[10:14, 30:50] -= 6.0  # a 2-s drop in bands 10-13 only (a blockage)
    starts = np.arange(0.0, 9.0)
    ends, scores = starts + 2.0, np.linspace(1.0, 1.1, 9)
    (span,) = band_time_spans(log_mel, _range(10, 14, -4.0), EDGES, frame_s, scores, starts, ends, 10.0)
    assert 2.7 <= span.start_s <= 3.1 and 4.9 <= span.end_s <= 5.3
    assert span.peak_score == scores[(starts < span.end_s) & (ends > span.start_s)].max()
    assert band_time_spans(log_mel, _range(10, 14, 4.0), EDGES, frame_s, scores, starts, ends, 10.0) == []  # a rise
    log_mel[10:14, 30:50] += 6.0
    log_mel[10:14, 5:95] -= 6.0  # the drop covers most of the clip: throughout, no span
    assert band_time_spans(log_mel, _range(10, 14, -4.0), EDGES, frame_s, scores, starts, ends, 10.0) == []


def test_rules_name_each_kind() -> None:
    quiet, flat_mel = np.zeros(len(GROUPS)), np.zeros((N_MELS, 100))
    assert kind_of_change(np.full(len(GROUPS), 4.0), GROUPS, [], WHOLE, flat_mel, EDGES) == BROADBAND_RISE
    assert kind_of_change(np.full(len(GROUPS), -4.0), GROUPS, [], WHOLE, flat_mel, EDGES) == BROADBAND_DROP
    assert kind_of_change(quiet, GROUPS, [_range(16, 64, 4.0)], WHOLE, flat_mel, EDGES) == BROADBAND_RISE
    line = [_range(40, 41, 6.0)]
    assert kind_of_change(quiet, GROUPS, line, WHOLE, flat_mel, EDGES) == NEW_LINE
    moved = [*line, _range(36, 37, -4.0)]
    assert kind_of_change(quiet, GROUPS, moved, WHOLE, flat_mel, EDGES) == MOVED_LINE
    assert kind_of_change(quiet, GROUPS, [_range(20, 24, 6.0, "peaks", 4.0)], WHOLE, flat_mel, EDGES) == IMPULSIVE
    # the same rise where the machine's normal clips have loud events of their own: their timing changed
    assert kind_of_change(quiet, GROUPS, [_range(20, 24, 6.0, "peaks", 12.0)], WHOLE, flat_mel, EDGES) == RHYTHM
    bursty = flat_mel.copy()
    bursty[20:30, 50:53] = 20.0
    spread = [_range(20, 30, 5.0, "variability")]
    assert kind_of_change(quiet, GROUPS, spread, WHOLE, bursty, EDGES) == IMPULSIVE
    rhythm = flat_mel.copy()
    rhythm[20:30, ::2] = 3.0
    assert kind_of_change(quiet, GROUPS, spread, WHOLE, rhythm, EDGES) == RHYTHM
    assert kind_of_change(quiet, GROUPS, [], [TimeSpan(2.0, 3.0, 5.0)], flat_mel, EDGES) == RHYTHM
    assert kind_of_change(quiet, GROUPS, [], WHOLE, flat_mel, EDGES) == UNSPECIFIED


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
    assert "kind:" in text and "when:" in text and str(picture) in text
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
    explanation = ssad.Detector.load(old).explain(normal)
    assert explanation.where == [] and explanation.kind == UNSPECIFIED and explanation.when
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
    explanation = loaded.explain(_test_clips(tiny_root)[0], "site-a/fan-7")
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
    explanation = refit.explain(clips[0], "site-a/fan-7")
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
