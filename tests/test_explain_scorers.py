"""Every scorer explains as it scores: `Encoder.encode` gives every output a scorer needs (the spectral floor's
included), per clip and per window, so an explanation's score is `Detector.score`'s; `ssad explain` and `ssad monitor`
on the shipped encoder's detector, whose default scorer is the floor+Gaussian ensemble."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ssad
from ssad.detector import enrollment
from ssad.encoder.encoder import SPECTRUM
from ssad.explain.explanation import explain
from ssad.models import files as weights
from ssad.scoring import SpectrumScorer

SSAD = [sys.executable, "-m", "ssad.cli"]
MACHINE = "site-a/fan-x"
#: every scorer the shipped encoder's detector can hold (softmax, which knows only a classifier's classes, below)
ENCODER_SCORERS = ("ensemble", "gaussian", "knn", "floor", "gaussian_top")
#: every scorer `classifier_detector` (tests/conftest.py) holds: the classifier's own, and the ensemble whose floor
#: member scores the spectrum (the floor alone is the shipped encoder's test's)
ALL_SCORERS = ("gaussian", "knn", "softmax", "ensemble", "gaussian_top")
shipped = pytest.mark.skipif(not (weights.PACKAGE_DIR / "encoder.safetensors").is_file(),
                             reason="no encoder shipped in this checkout")


def _clips(root: Path, kind: str = "train/normal", machine_id: str = "id_00") -> list[str]:
    return [str(p) for p in sorted(root.glob(f"fan/{kind}_{machine_id}_*.wav"))]


def _explains_as_it_scores(detector: ssad.Detector, clip: str, machine: str, scorers: tuple[str, ...]) -> None:
    for name in scorers:
        explanation = explain(detector, clip, machine, scorer=name)
        scored = detector.score([clip], machine, scorer=name)
        assert explanation.score == float(scored.scores[0]), name
        assert explanation.decision == int(scored.decisions[0]) and explanation.scorer == name
        windows = explanation.evidence.window_scores
        assert len(windows) == explanation.evidence.window_centres_s.size >= 1 and np.all(np.isfinite(windows)), name


@shipped
@pytest.mark.slow  # fitting the floor and the ensemble on the shipped encoder's outputs takes seconds
def test_the_shipped_encoders_detector_explains_with_every_scorer(tiny_root: Path, tmp_path: Path) -> None:
    folder = ssad.Detector.pretrained(scorers=ENCODER_SCORERS).save(tmp_path / "det")
    enrollment.enroll(folder, MACHINE, _clips(tiny_root)[:5])
    detector = ssad.Detector.load(folder)
    assert detector.default_scorer == "ensemble" and isinstance(detector.scorers["floor"], SpectrumScorer)
    _explains_as_it_scores(detector, _clips(tiny_root, "test/anomaly")[0], MACHINE, ENCODER_SCORERS)


def test_every_window_row_is_shaped_like_a_clip_row(classifier_detector: ssad.Detector, tiny_root: Path) -> None:
    model = classifier_detector.model
    log_mels = model.log_mels(_clips(tiny_root, "test/anomaly")[:2])
    outputs = model.encode(log_mels, windows=True)
    assert sorted(outputs.windows) == sorted(outputs.clips) == ["embedding", "neg_log_prob", SPECTRUM]
    counts = [(m.shape[1] - 16) // 8 + 1 for m in log_mels]  # windows of 16 frames every 8
    assert outputs.window_counts == counts and min(counts) >= 5
    for name, rows in outputs.windows.items():
        assert rows.shape == (sum(counts), *outputs.clips[name].shape[1:]), name
    np.testing.assert_allclose(outputs.clips[SPECTRUM], model.outputs_from_log_mels(log_mels)[SPECTRUM])
    first = log_mels[0][:, 8:24]  # the second window of the first clip: its frames' mean and std per band
    np.testing.assert_allclose(outputs.windows[SPECTRUM][1], torch.cat([first.mean(1), first.std(1, unbiased=False)]),
                               rtol=1e-5, atol=1e-5)
    # a window's embedding row: its own embedding beside the whole clip's spread, as wide as the clip's
    dim = outputs.clips["embedding"].shape[1] // 2
    np.testing.assert_allclose(outputs.windows["embedding"][: counts[0], dim:],
                               np.tile(outputs.clips["embedding"][0, dim:], (counts[0], 1)))


def test_a_classifiers_detector_explains_with_every_scorer(classifier_detector: ssad.Detector, tiny_root: Path) -> None:
    assert sorted(classifier_detector.scorers) == sorted(ALL_SCORERS)
    for clip in _clips(tiny_root, "test/anomaly")[:2]:
        _explains_as_it_scores(classifier_detector, clip, "fan/id_00", ALL_SCORERS)


def _turning_anomalous(clips: list[str], out: Path) -> tuple[Path, Path]:
    """The clips one after another, then again with a loud 1-kHz tone added: a machine that goes wrong mid-stream;
    and the faulty half alone beside it (`out` with `_fault` in its name)."""
    waves = [sf.read(c, dtype="float32")[0] for c in clips]
    rate = sf.info(clips[0]).samplerate
    normal = np.concatenate(waves)
    t = np.arange(len(normal)) / rate
    tone = 4.0 * float(np.sqrt(np.mean(normal**2))) * np.sin(2 * np.pi * 1000.0 * t)
    sf.write(out, np.concatenate([normal, normal + tone]).astype(np.float32), rate)
    fault = out.with_name(f"{out.stem}_fault.wav")
    sf.write(fault, (normal + tone).astype(np.float32), rate)
    return out, fault


@shipped
@pytest.mark.slow
def test_explain_and_monitor_commands_on_the_shipped_encoders_detector(tiny_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "det"
    for args in (["detector", "--pretrained", "--out", str(folder)],
                 ["enroll", "--detector", str(folder), "--machine", MACHINE, "--quiet", *_clips(tiny_root)[:5]]):
        subprocess.run([*SSAD, *args], check=True, capture_output=True)
    stream, fault = _turning_anomalous(_clips(tiny_root), tmp_path / "stream.wav")

    picture = tmp_path / "why.png"
    done = subprocess.run([*SSAD, "explain", "--detector", str(folder), "--machine", MACHINE, "--json", "--plot",
                           str(picture), str(fault)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)
    assert item["scorer"] == "ensemble" and item["decision"] == 1 and item["kind"] and item["summary"]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scored = subprocess.run([*SSAD, "score", "--detector", str(folder), "--machine", MACHINE, "--json", str(fault)],
                            check=True, capture_output=True, text=True)
    assert item["score"] == json.loads(scored.stdout)[0]["score"]

    done = subprocess.run([*SSAD, "monitor", "--detector", str(folder), "--machine", MACHINE, "--source", str(stream),
                           "--heartbeat", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    alerting = [line for line in lines if line["alert"]]
    assert alerting and not lines[0]["alert"] and "ALERT" in done.stderr
    assert all(line["start"] >= 10.0 for line in alerting)  # only once the tone is on (after 12 s of normal audio)
    for line in alerting:
        assert line["explanation"] and line["kind"] in line["explanation"] and line["where"] and line["when"]
    assert len({line["kind"] for line in alerting}) == 1  # one event, one kind
