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

from ssad.explain.bands import BandProfile, band_groups, band_statistics
from ssad.explain.explanation import FrequencyRange, TimeSpan, frequency_ranges, time_spans
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
    level, variability = rng.normal(size=(20, 8)), rng.normal(1.0, 0.1, size=(20, 8))
    ids = ["a"] * 10 + ["b"] * 10
    profile = BandProfile.fit(level, variability, ids)
    np.testing.assert_allclose(profile.of("b").level_mean, level[10:].mean(axis=0))
    refit = profile.refit("c", level[:5] + 3, variability[:5])
    assert refit.machines == ["a", "b", "c"] and refit.of("c").clips == 5
    np.testing.assert_allclose(refit.of("a").level_spread, profile.of("a").level_spread)
    refit.save(tmp_path / "bands.npz")
    again = BandProfile.load(tmp_path / "bands.npz")
    assert again.machines == refit.machines
    np.testing.assert_allclose(again.of("c").level_mean, refit.of("c").level_mean)
    assert BandProfile.load(tmp_path / "missing.npz") is None


def test_band_groups_average_their_bands() -> None:
    assert GROUPS.shape == (64 + 16 + 4, 2) and tuple(GROUPS[64]) == (0, 4) and tuple(GROUPS[-1]) == (48, 64)
    log_mel = np.zeros((N_MELS, 10))
    log_mel[8:12, ::2] = 4.0
    level, variability = band_statistics(log_mel)
    assert level[8] == 2.0 and variability[8] == 2.0 and level[64 + 2] == 2.0  # the group of bands 8-11
    assert level[64 + 16] == 0.5 and variability[64 + 16] == 0.5  # bands 0-15: a quarter of them


def test_the_strongest_group_wins_and_hides_the_groups_it_overlaps() -> None:
    level_z, change = np.zeros(len(GROUPS)), np.zeros(len(GROUPS))
    level_z[30], change[30] = 8.0, 9.0  # band 30 alone
    level_z[64 + 7], change[64 + 7] = 4.0, 2.0  # bands 28-31, overlapping it
    level_z[64 + 16 + 3], change[64 + 16 + 3] = -3.5, -1.0  # bands 48-63
    zeros = np.zeros(len(GROUPS))
    ranges = frequency_ranges(change, level_z, zeros, zeros, GROUPS, EDGES)
    assert [(r.low_hz, r.high_hz, r.change_db, r.z, r.measure) for r in ranges] == [
        (round(EDGES[30], 1), round(EDGES[31], 1), 9.0, 8.0, "level"),
        (round(EDGES[48], 1), 8000.0, -1.0, -3.5, "level"),
    ]
    assert frequency_ranges(change, np.full(len(GROUPS), 1.0), zeros, zeros, GROUPS, EDGES) == []


def test_time_spans_find_a_burst_and_say_throughout_for_a_flat_curve() -> None:
    centres = np.arange(1.0, 10.0)
    burst = np.ones(9)
    burst[5] = 10.0
    (span,) = time_spans(burst, centres, 1.0, 10.0)
    assert (span.start_s, span.end_s, span.whole_clip) == (5.5, 6.5, False)
    flat = time_spans(np.full(9, 3.0) + 0.01 * np.arange(9), centres, 1.0, 10.0)
    assert len(flat) == 1 and flat[0].whole_clip and flat[0].end_s == 10.0


def _level_range(low: int, high: int, z: float) -> FrequencyRange:
    return FrequencyRange(float(EDGES[low]), float(EDGES[high]), z, z, "level")


def test_rules_name_each_kind() -> None:
    quiet, flat_mel = np.zeros(len(GROUPS)), np.zeros((N_MELS, 100))
    assert kind_of_change(np.full(len(GROUPS), 4.0), GROUPS, [], WHOLE, flat_mel, EDGES) == BROADBAND_RISE
    assert kind_of_change(np.full(len(GROUPS), -4.0), GROUPS, [], WHOLE, flat_mel, EDGES) == BROADBAND_DROP
    line = [_level_range(40, 41, 6.0)]
    assert kind_of_change(quiet, GROUPS, line, WHOLE, flat_mel, EDGES) == NEW_LINE
    moved = [*line, _level_range(36, 37, -4.0)]
    assert kind_of_change(quiet, GROUPS, moved, WHOLE, flat_mel, EDGES) == MOVED_LINE
    bursty = flat_mel.copy()
    bursty[20:30, 50:53] = 20.0
    spread = [FrequencyRange(float(EDGES[20]), float(EDGES[30]), 3.0, 5.0, "variability")]
    assert kind_of_change(quiet, GROUPS, spread, WHOLE, bursty, EDGES) == IMPULSIVE
    rhythm = flat_mel.copy()
    rhythm[20:30, ::2] = 3.0
    assert kind_of_change(quiet, GROUPS, spread, WHOLE, rhythm, EDGES) == RHYTHM
    peaky_time = [TimeSpan(2.0, 3.0, 5.0)]
    assert kind_of_change(quiet, GROUPS, [], peaky_time, flat_mel, EDGES) == RHYTHM
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
    from ssad.enrollment import enroll

    det = Path(shutil.copytree(explain_detector, tmp_path / "det"))
    enroll(det, "site-a/fan-7", [str(p) for p in sorted(tiny_root.glob("fan/train/normal_id_06_*.wav"))[:5]])
    loaded = ssad.Detector.load(det)
    assert loaded.normal_bands.of("site-a/fan-7").clips == 5
    explanation = loaded.explain(_test_clips(tiny_root)[0], "site-a/fan-7")
    assert explanation.note is None and explanation.machine == "site-a/fan-7"


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
        for path, family, span, band in zip(anomalies, ["leak", "bearing", "made_up_family"],
                                            [(0, 2), (0.5, 0.8), (0, 2)], [(0, 8000), (2000, 4000), (0, 8000)],
                                            strict=True):
            writer.writerow([path.relative_to(tiny_root), "fan", "id_00", family, 0.5, *span, *band])
    out = tmp_path / "results"
    subprocess.run([sys.executable, str(REPO / "experiments" / "explain_accuracy.py"), "--detector",
                    str(explain_detector), "--data", str(tiny_root), "--faults", str(faults), "--out", str(out),
                    "--examples", "1"], check=True, capture_output=True, text=True)
    report = (out / "explain.md").read_text()
    for family in ("leak", "bearing", "made_up_family", "**all**"):
        assert f"| {family} | 1 |" in report or f"| {family} | 3 |" in report
    assert "Families without an expected kind in `FAMILY_KINDS` (not counted in *kind*): made_up_family" in report
    rows = list(csv.DictReader(open(out / "explain.csv")))
    assert [r["transient"] for r in rows] == ["0", "1", "0"]
    assert rows[2]["kind_hit"] == ""
