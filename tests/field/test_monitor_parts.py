"""The live monitor's parts without a model: windows, smoothing, the alert rule, drift, PCM and MQTT names."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from scipy import stats

from ssad.core.errors import SsadError
from ssad.field.alerts import AlertRule, Smoother
from ssad.field.drift import DriftTest
from ssad.field.mqtt import machine_from_topic, parse_mqtt_url
from ssad.field.sources import StdinSource, pcm_bytes_to_float
from ssad.field.windows import WindowCutter
from ssad.scoring.thresholds import AlarmThreshold


def test_window_cutter_cuts_overlapping_windows_across_chunk_boundaries() -> None:
    cutter = WindowCutter(size=4, hop=2)
    stream = np.arange(11, dtype=np.float32)
    windows = []
    for piece in (stream[:3], stream[3:4], stream[4:9], stream[9:]):
        windows += cutter.push(piece)
    assert [start for start, _ in windows] == [0, 2, 4, 6]
    for start, samples in windows:
        np.testing.assert_array_equal(samples, stream[start : start + 4])
    assert cutter.position == 11


def test_window_cutter_hop_longer_than_window_skips_samples() -> None:
    cutter = WindowCutter(size=2, hop=5)
    windows = cutter.push(np.arange(13, dtype=np.float32))
    assert [s.tolist() for _, s in windows] == [[0, 1], [5, 6], [10, 11]]


def test_ema_and_moving_mean_smoothing() -> None:
    ema = Smoother("ema", windows=3)  # alpha = 0.5
    assert [ema.update(x) for x in (4.0, 0.0, 2.0)] == [4.0, 2.0, 2.0]
    mean = Smoother("mean", windows=2)
    assert [mean.update(x) for x in (4.0, 0.0, 2.0)] == [4.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="smoothing"):
        Smoother("median")


def test_alert_needs_n_consecutive_windows_above_threshold_and_clears() -> None:
    rule = AlertRule(after=3)
    changes, states = [], []
    for smoothed in (2, 2, 0, 2, 2, 2, 2, 0):
        changes.append(rule.update(smoothed, threshold=1.0))
        states.append(rule.alerting)
    assert states == [False, False, False, False, False, True, True, False]
    assert changes == [False, False, False, False, False, True, False, True]


def _threshold(machine: str, scores: np.ndarray) -> AlarmThreshold:
    return AlarmThreshold(0.1).fit(scores, [machine] * len(scores))


def test_drift_against_the_held_out_scores_flags_shifted_scores_only() -> None:
    rng = np.random.default_rng(0)
    fitted = _threshold("fan/id_00", stats.gamma.rvs(4.0, scale=1.0, size=400, random_state=rng))
    same = DriftTest(fitted, "fan/id_00", windows=40, alpha=1e-3)
    for s in stats.gamma.rvs(4.0, scale=1.0, size=40, random_state=rng):
        same.update(float(s))
    assert same.state is not None and not same.drifting and same.state.test == "ks-held-out"
    shifted = DriftTest(fitted, "fan/id_00", windows=40, alpha=1e-3)
    changed = [shifted.update(float(s)) for s in stats.gamma.rvs(4.0, scale=1.0, size=40, random_state=rng) + 4.0]
    assert shifted.drifting and changed.count(True) == 1 and shifted.state.p_value < 1e-3


def test_drift_with_few_held_out_scores_tests_the_share_above_threshold() -> None:
    fitted = _threshold("pump/id_00", np.linspace(0.0, 1.0, 10))  # fewer than MIN_REFERENCE scores
    test = DriftTest(fitted, "pump/id_00", windows=20, alpha=1e-3)
    for _ in range(20):
        test.update(fitted.threshold_["pump/id_00"] + 1.0)  # every recent score above: expected 10 %
    assert test.drifting and test.state.test == "share-above-threshold" and test.state.statistic == 1.0


def test_drift_uses_every_nth_score_for_overlapping_windows() -> None:
    fitted = _threshold("fan/id_00", stats.gamma.rvs(4.0, size=200, random_state=1))
    test = DriftTest(fitted, "fan/id_00", windows=5, every=2)
    for s in range(9):
        test.update(float(s))
    assert test.state is not None  # 9 scores, every 2nd kept: 5
    assert list(test._recent) == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_stdin_pcm_is_read_across_odd_reads_and_a_trailing_half_sample_is_reported(caplog) -> None:
    samples = np.array([0, 16384, -32768, 32767, -1], dtype="<i2")
    raw = samples.tobytes() + b"\x01"  # one stray byte at the end

    class Trickle(io.BytesIO):
        def read1(self, n: int = -1) -> bytes:  # hand out 3 bytes at a time: reads split samples
            return super().read1(3)

    with caplog.at_level(logging.WARNING, logger="ssad"):
        chunks = [c for c in StdinSource(Trickle(raw), "fan/id_00") if c is not None]
    got = np.concatenate([c.samples for c in chunks])
    np.testing.assert_array_equal(got, pcm_bytes_to_float(samples.tobytes()))
    assert chunks[-1].final and "half a sample" in caplog.text
    assert pcm_bytes_to_float(samples.tobytes())[1] == 0.5


def test_mqtt_addresses_and_topic_machines() -> None:
    address = parse_mqtt_url("mqtt://127.0.0.1:1884/plant/+/#")
    assert (address.host, address.port, address.topic) == ("127.0.0.1", 1884, "plant/+/#")
    assert parse_mqtt_url("mqtt://broker/x").port == 1883
    with pytest.raises(SsadError, match="mqtt://"):
        parse_mqtt_url("http://broker/x")
    assert machine_from_topic("plant/+/+", "plant/fan/id_00") == "fan/id_00"
    assert machine_from_topic("plant/+/+", "plant/fan") is None
    assert machine_from_topic("plant/+/+", "other/fan/id_00") is None
    assert machine_from_topic("site/#", "site/a/fan/id_02") == "a/fan/id_02"
    assert machine_from_topic("plant/fan00", "plant/fan00") == "plant/fan00"
