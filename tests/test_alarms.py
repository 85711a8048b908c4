"""Alarms that keep their promise: recordings told apart, scores held out by recording, thresholds that aim at a stated
false-alarm rate, and the learning period on site (`ssad calibrate`, `ssad monitor --learn`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.recordings import blocks, groups_by_machine, recording_groups
from ssad.scoring import GaussianScorer
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.recording_shift import FEW_RECORDINGS, RecordingShift, recording_shift
from ssad.scoring.thresholds import AlarmThreshold

SSAD = [sys.executable, "-m", "ssad.cli"]


def _touch(folder: Path, names: list[str], times: list[float] | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        path = folder / name
        path.write_bytes(b"")
        if times is not None:
            os.utime(path, (times[k], times[k]))
        paths.append(str(path))
    return paths


def test_recordings_are_told_apart_by_name_gaps_then_file_times_then_blocks(tmp_path: Path) -> None:
    pieces = _touch(tmp_path / "a", [f"rec_{n}.wav" for n in (100, 101, 102, 200, 201, 202, 300, 301)])
    labels, how = recording_groups(pieces)
    assert how == "names" and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    day = 86400.0
    stamped = _touch(tmp_path / "b", [f"clip_{n:03d}.wav" for n in range(8)],
                     times=[1e9 + k * 10 for k in range(4)] + [1e9 + day + k * 10 for k in range(4)])
    labels, how = recording_groups(stamped)
    assert how == "file times" and labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    plain = _touch(tmp_path / "c", [f"clip_{n:03d}.wav" for n in range(12)], times=[1e9 + k for k in range(12)])
    labels, how = recording_groups(plain)
    assert how == "blocks" and labels.tolist() == blocks(12).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert blocks(20).tolist() == np.repeat(np.arange(5), 4).tolist() and blocks(7).tolist() == [0] * 7
    assert recording_groups(3)[0].tolist() == [0, 0, 0]
    # per machine, in file-name order whatever order the rows come in
    rows = [*reversed(pieces), *plain[:8]]
    assert groups_by_machine(rows, ["m"] * 8 + ["n"] * 8).tolist() == [2, 2, 1, 1, 1, 0, 0, 0] + [0] * 4 + [1] * 4


def _shifted(rng: np.random.Generator, recordings: int, clips: int, shift: float, dim: int = 4) -> np.ndarray:
    """Clips of one machine whose recordings sit `shift` apart on average (a random offset per recording)."""
    offsets = rng.normal(0.0, shift, size=(recordings, dim))
    return np.concatenate([offsets[r] + rng.normal(size=(clips, dim)) for r in range(recordings)])


def test_held_out_by_recording_scores_see_the_shift_that_clip_by_clip_scores_miss() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([_shifted(rng, 5, 20, 2.0), _shifted(rng, 5, 20, 0.0)])
    ids = ["shifting"] * 100 + ["steady"] * 100
    groups = np.tile(np.repeat(np.arange(5), 20), 2)
    scorer = GaussianScorer().fit(X, ids)
    held = held_out_scores(scorer, X, ids, groups)
    loo = scorer.train_scores_
    shifting, steady = slice(0, 100), slice(100, 200)
    assert np.median(held[shifting]) > 1.3 * np.median(loo[shifting])
    assert np.median(held[steady]) == pytest.approx(np.median(loo[steady]), rel=0.15)
    # each held-out fold is fitted exactly as the full fit without the held-out recording
    alone = GaussianScorer().fit(np.delete(X, range(20), axis=0), np.delete(ids, range(20)))
    np.testing.assert_allclose(held[:20], alone.score(X[:20], ids[:20]))
    # a machine of one recording keeps its own (clip by clip) training scores
    single = held_out_scores(scorer, X, ids, np.zeros(200, dtype=int))
    np.testing.assert_allclose(single, loo)


def test_enrolment_folds_refit_into_the_scorer_as_it_was() -> None:
    rng = np.random.default_rng(1)
    base = GaussianScorer().fit(rng.normal(size=(60, 4)), ["a"] * 30 + ["b"] * 30)
    X = _shifted(rng, 3, 10, 1.0)
    groups = np.repeat(np.arange(3), 10)
    refit = base.refit_ids(X, ["new"] * 30)
    held = held_out_scores(refit, X, ["new"] * 30, groups, base=base)
    fold = base.refit_ids(X[10:], ["new"] * 20)
    np.testing.assert_allclose(held[:10], fold.score(X[:10], ["new"] * 10))


def test_the_predictive_threshold_widens_with_shifts_between_recordings_and_few_clips() -> None:
    rng = np.random.default_rng(2)
    steady = rng.normal(size=500)
    shifting = (rng.normal(0, 1.0, 5)[:, None] + rng.normal(size=(5, 100))).ravel()
    groups = np.repeat(np.arange(5), 100)
    thr = AlarmThreshold(0.05).fit(np.r_[steady, shifting], ["steady"] * 500 + ["shifting"] * 500, np.r_[groups, groups])
    assert thr.threshold_["steady"] == pytest.approx(np.quantile(steady, 0.95), abs=0.15)
    # five recordings show their spread, not a sixth's: the margin above the seen scores' quantile widens
    assert thr.threshold_["shifting"] - np.quantile(shifting, 0.95) > thr.threshold_["steady"] - np.quantile(steady, 0.95) + 0.1
    assert not thr.shift_of("steady").shifting and thr.shift_of("shifting").shifting
    assert thr.shift_of("shifting").between > 0.3 and "learning period" in thr.shift_of("shifting").format()
    few = AlarmThreshold(0.05).fit(steady[:12], ["m"] * 12, np.repeat(np.arange(3), 4))
    assert few.threshold_["m"] > np.quantile(steady[:12], 0.95)  # 12 clips: a wider margin than their quantile
    assert recording_shift([1.0, 2.0], [0, 0]).p_value == 1.0


def test_rates_are_per_machine_and_stated() -> None:
    rng = np.random.default_rng(3)
    thr = AlarmThreshold(0.05).fit(rng.normal(size=100), ["a"] * 100)
    strict = thr.refit_ids(rng.normal(size=100), ["b"] * 100, false_alarm_rate=0.01)
    assert strict.rate_of("a") == 0.05 and strict.rate_of("b") == 0.01
    assert strict.threshold_["b"] > strict.threshold_["a"]
    again = strict.refit_ids(rng.normal(size=100), ["b"] * 100)  # keeps b's own rate
    assert again.rate_of("b") == 0.01
    with pytest.raises(ValueError, match="false_alarm_rate=1.5"):
        thr.refit_ids([1.0], ["c"], false_alarm_rate=1.5)


def test_calibration_on_site_recentres_the_threshold_on_the_site() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=200)
    thr = AlarmThreshold(0.05).fit(scores, ["m"] * 200, np.repeat(np.arange(5), 40))
    louder = thr.calibrated("m", rng.normal(2.0, 1.0, 40))
    quieter = thr.calibrated("m", rng.normal(-1.0, 1.0, 40))
    assert louder.threshold_["m"] > thr.threshold_["m"] + 1.0 > quieter.threshold_["m"] + 1.0
    assert "calibrated on 40 site clip(s)" in louder.how_["m"] and len(louder.normal_scores_["m"]) == 240
    assert thr.threshold_["m"] == AlarmThreshold.from_dict(thr.to_dict()).threshold_["m"]  # unchanged
    other = AlarmThreshold(0.05).fit(rng.normal(size=50), ["x"] * 50)
    merged = other.refit_ids(scores, ["m"] * 200).adopted(louder, "m")
    assert merged.threshold_["m"] == louder.threshold_["m"] and "x" in merged.threshold_


def _write_clips(folder: Path, count: int, seed: int, level: float = 0.05, tone: float = 0.0) -> list[str]:
    """1-s clips of a hum with noise; `tone` adds a loud 2.2 kHz whine (a fault any detector sees)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    paths = []
    for k in range(count):
        wave = 0.2 * np.sin(2 * np.pi * 120 * t) + level * rng.normal(size=t.size) + tone * np.sin(2 * np.pi * 2200 * t)
        path = folder / f"rec_{k:03d}.wav"
        sf.write(path, (0.5 * wave).astype(np.float32), 16000, subtype="PCM_16")
        paths.append(str(path))
    return paths


@pytest.mark.slow
def test_enrol_with_a_rate_then_calibrate_on_site_and_undo(tmp_path: Path) -> None:
    """The cold start as the README walks it: a stated rate at enrolment, a learning period from site recordings."""
    det = tmp_path / "det"
    run = lambda *args: subprocess.run([*SSAD, *args], capture_output=True, text=True, check=True)  # noqa: E731
    made = run("detector", "--pretrained", "--out", str(det))
    assert "aim at 0.05 false alarms" in made.stdout
    enrolled = run("enroll", "--quiet", "--detector", str(det), "--machine", "site/press", "--false-alarm-rate",
                   "0.1", *_write_clips(tmp_path / "press", 12, seed=0))
    assert "aiming at 0.1 false alarms" in enrolled.stdout and "recordings;" in enrolled.stdout
    # 12 clips with nothing in their names or times to tell recordings apart: 3 blocks, too few to know a later one
    advice = "so a learning period on site is advised"
    assert (enrolled.stdout + enrolled.stderr).count(advice) == 1 and "too few recordings" in enrolled.stdout
    thresholds = json.loads((det / "versions" / "0001" / "thresholds.json").read_text())
    assert thresholds["ensemble"]["rates"] == {"site/press": 0.1}
    before = thresholds["ensemble"]["thresholds"]["site/press"]
    site = _write_clips(tmp_path / "site", 6, seed=1, level=0.15)  # the machine where it stands: noisier
    calibrated = run("calibrate", "--quiet", "--detector", str(det), "--machine", "site/press", *site)
    assert "calibrated site/press on 6 site recording(s)" in calibrated.stdout and "(version 2)" in calibrated.stdout
    after = json.loads((det / "versions" / "0002" / "thresholds.json").read_text())["ensemble"]
    assert after["thresholds"]["site/press"] > before and "calibrated on 6" in after["how"]["site/press"]
    scored = json.loads(run("score", "--detector", str(det), "--machine", "site/press", "--json", *site).stdout)
    assert sum(row["decision"] for row in scored) <= 1  # the site's own normal sound raises (almost) no alarm
    run("feedback", "--detector", str(det), "--machine", "site/press", "--undo")
    assert json.loads((det / "current.json").read_text())["version"] == 1
    bad = subprocess.run([*SSAD, "enroll", "--detector", str(det), "--machine", "x", "--false-alarm-rate", "2", site[0]],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--false-alarm-rate: '2': give a share strictly between 0 and 1" in bad.stderr


@pytest.mark.slow
def test_monitor_learns_then_arms_and_keeps_the_threshold(tmp_path: Path) -> None:
    """`ssad monitor --learn`: no alert while learning, an "armed" event, then alerts on a fault; saved as a version."""
    det = tmp_path / "det"
    subprocess.run([*SSAD, "detector", "--pretrained", "--out", str(det)], check=True, capture_output=True)
    subprocess.run([*SSAD, "enroll", "--quiet", "--detector", str(det), "--machine", "site/press",
                    *_write_clips(tmp_path / "press", 12, seed=0)], check=True, capture_output=True)
    site = [sf.read(p)[0] for p in _write_clips(tmp_path / "site", 12, seed=2, level=0.15)]
    fault = [sf.read(p)[0] for p in _write_clips(tmp_path / "fault", 8, seed=3, level=0.15, tone=0.5)]
    stream = tmp_path / "live.wav"
    sf.write(stream, np.concatenate(site + fault), 16000, subtype="PCM_16")
    done = subprocess.run([*SSAD, "monitor", "--detector", str(det), "--source", str(stream), "--learn", "8s",
                           "--heartbeat", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    learning = [line for line in lines if line.get("learning")]
    assert learning and not any(line["alert"] for line in learning)
    assert max(line["start"] for line in learning) + 1.0 <= 8.0 + 1e-6
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    armed = [e for e in events if e.get("event") == "armed"]
    assert len(armed) == 1 and armed[0]["machine"] == "site/press" and armed[0]["learned_s"] == pytest.approx(8.0)
    assert all(line["threshold"] == pytest.approx(armed[0]["threshold"]) for line in lines if not line.get("learning"))
    assert any(line["alert"] for line in lines if line["start"] >= 12.0)  # the whine
    assert not any(line["alert"] for line in lines if 8.0 <= line["start"] < 11.0)  # the site's normal sound
    record = json.loads((det / "versions" / "0002" / "version.json").read_text())
    assert record["action"] == "calibrate" and record["files"] == ["ssad monitor --learn"]


def test_clips_the_model_never_trained_on_set_the_margin() -> None:
    """A model knows its training clips better than a new recording: its validation clips show by how much."""
    rng = np.random.default_rng(5)
    machines = [f"m{k}" for k in range(6)]
    seen = rng.normal(0.0, 1.0, size=(6, 40))
    unseen = rng.normal(1.5, 1.3, size=(6, 10))  # what a new recording scores: higher and wider
    scores = np.concatenate([np.r_[s, u] for s, u in zip(seen, unseen, strict=True)])
    ids = np.repeat(machines, 50)
    mask = np.tile(np.r_[np.zeros(40, bool), np.ones(10, bool)], 6)
    groups = np.tile(np.r_[np.arange(40) // 8, np.arange(10) // 2], 6)  # validation clips drawn from each recording
    plain = AlarmThreshold(0.05).fit(scores[~mask], ids[~mask], groups[~mask])
    aware = AlarmThreshold(0.05).fit(scores, ids, groups, unseen=mask)
    fresh = rng.normal(1.5, 1.3, size=20000)
    flagged = {name: [np.mean(fresh > t.threshold_[m]) for m in machines] for name, t in (("plain", plain), ("aware", aware))}
    assert np.mean(flagged["plain"]) > 0.3  # from the seen clips alone: far more alarms than promised
    assert np.mean(flagged["aware"]) == pytest.approx(0.05, abs=0.03)  # 60 unseen clips: about the promise
    assert "never trained on" in aware.how_["m0"]
    few = AlarmThreshold(0.05).fit(scores, ids, groups, unseen=mask & (ids == "m0") & (np.arange(300) % 50 < 44))  # 4: too few
    assert few.threshold_["m0"] == pytest.approx(AlarmThreshold(0.05).fit(scores, ids, groups).threshold_["m0"])


def test_a_run_records_the_clips_its_network_never_trained_on(tiny_run: Path, tiny_root: Path) -> None:
    from ssad.models.runs import unseen_clips

    held = unseen_clips(tiny_run)
    train = {str(p.resolve()) for p in tiny_root.glob("*/train/*.wav")}
    assert held and held < train  # configs/tiny.yaml holds out 20 % of each machine's clips
    assert unseen_clips(tiny_root) is None


def test_few_or_shifting_recordings_advise_a_learning_period_and_many_steady_ones_do_not() -> None:
    steady = RecordingShift(FEW_RECORDINGS, 0.05, 0.4)
    assert not steady.advised and "learning period" not in steady.format()
    few = RecordingShift(3, 0.18, 0.17)  # fault3 machine 1: steady over its three recordings, not after them
    assert few.advised and not few.shifting
    assert "3 recordings; 18 %" in few.format() and "too few recordings" in few.format()
    assert "learning period on site is advised" in few.format()
    one = RecordingShift(1, 0.0, 1.0)
    assert one.advised and one.format().startswith("one recording") and "learning period" in one.format()
    shifting = RecordingShift(6, 0.31, 1e-30)
    assert shifting.advised and "shifts from one recording to the next" in shifting.format()


def test_the_library_warns_once_when_enrolment_advises_a_learning_period(tmp_path: Path, caplog) -> None:
    import logging

    from ssad.detector import Detector

    clips = _write_clips(tmp_path / "press", 12, seed=0)
    with caplog.at_level(logging.WARNING, logger="ssad"):
        detector = Detector.pretrained().enroll("site/press", clips)
    assert detector.last_update.shift.advised
    assert caplog.text.count("learning period on site is advised") == 1
