"""`ssad monitor` on a tiny detector: a WAV file, stdin, a watched folder, malformed input, Ctrl-C."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, wav_bytes

from ssad.cli import main
from ssad.detector import Detector
from ssad.field.monitor import Monitor, MonitorSettings
from ssad.field.sources import FolderSource, StdinSource

KEYS = {"time", "machine", "score", "threshold", "alert", "smoothed", "drift", "drift_stat", "stream", "start"}


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_wav_file_is_scored_window_by_window_like_the_detector_scores_it(
        field_detector: Path, tiny_root: Path, capsys: pytest.CaptureFixture) -> None:
    clip = sorted((tiny_root / "fan" / "test").glob("anomaly_id_00_*.wav"))[0]
    assert main(["monitor", "--detector", str(field_detector), "--machine", "fan/id_00", "--source", str(clip),
                 "--hop", "0.5", "--window", "1.0"]) == 0
    rows = _lines(capsys.readouterr().out)
    assert [r["start"] for r in rows] == [0.0, 0.5, 1.0]  # 2 s clip, 1 s windows every 0.5 s
    assert KEYS <= set(rows[0]) and {r["machine"] for r in rows} == {"fan/id_00"}
    detector = Detector.load(field_detector)
    wave, rate = sf.read(clip, dtype="float32")
    expected = detector.score([wave[:rate], wave[rate // 2 : rate + rate // 2], wave[rate:]], "fan/id_00").scores
    np.testing.assert_allclose([r["score"] for r in rows], expected, rtol=1e-5)
    assert rows[0]["threshold"] == pytest.approx(detector.thresholds[detector.default_scorer].threshold_["fan/id_00"])


def test_default_window_is_the_detectors_clip_length_and_max_windows_stops(
        field_detector: Path, tiny_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert Detector.load(field_detector).clip_seconds == pytest.approx(2.0)
    clip = sorted((tiny_root / "pump" / "test").glob("normal_id_02_*.wav"))[0]
    assert main(["monitor", "--detector", str(field_detector), "--machine", "pump/id_02", "--source", str(clip),
                 "--max-windows", "1"]) == 0
    rows = _lines(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["start"] == 0.0


def test_unknown_machine_is_a_clear_error(field_detector: Path, tiny_root: Path, capsys) -> None:
    clip = sorted((tiny_root / "fan" / "test").glob("*.wav"))[0]
    assert main(["monitor", "--detector", str(field_detector), "--machine", "fan/id_99", "--source", str(clip)]) == 2
    assert "fan/id_99" in capsys.readouterr().err


def test_stdin_pcm_stream_in_batches_with_smoothing_and_alerts(field_detector: Path) -> None:
    detector = Detector.load(field_detector)
    thresholds = detector.thresholds[detector.default_scorer].threshold_
    settings = MonitorSettings(window=1.0, hop=1.0, smooth_windows=2, alert_after=2, batch_size=4)
    out, raised = io.StringIO(), []
    monitor = Monitor(detector, settings, out=out, publish=raised.append)
    pcm = tone(3.0).tobytes()
    thresholds["fan/id_00"] = 1e9  # thresholds set by hand so the test does not rest on the tiny model's quality
    assert monitor.run(StdinSource(io.BytesIO(pcm), "fan/id_00")) == 3
    thresholds["fan/id_00"] = -1e9  # from here on every window is above: the alert comes at the second
    assert monitor.run(StdinSource(io.BytesIO(tone(3.0, seed=1).tobytes()), "fan/id_00")) == 6
    rows = _lines(out.getvalue())
    assert [r["start"] for r in rows] == [0.0, 1.0, 2.0] * 2
    scores = [r["score"] for r in rows]
    assert rows[1]["smoothed"] == pytest.approx(scores[0] + 2 / 3 * (scores[1] - scores[0]))  # EMA over 2
    assert [r["alert"] for r in rows] == [False, False, False, False, True, True]
    assert [r["above_for"] for r in rows[3:]] == [1, 2, 3]
    assert len(raised) == 1 and json.loads(raised[0])["event"] == "alert" and monitor.alerts_raised == 1


def test_folder_waits_for_files_being_written_and_skips_bad_ones(
        field_detector: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a-good.wav").write_bytes(wav_bytes(tone(1.0, seed=1)))
    (folder / "b-truncated.wav").write_bytes(wav_bytes(tone(0.5, seed=2), declared=16000))
    (folder / "c-wrong-format.wav").write_bytes(wav_bytes(tone(1.0), format_tag=0x1234))
    (folder / "notes.txt").write_text("not audio")
    full = wav_bytes(tone(1.0, seed=3))

    def writer() -> None:  # a recorder that stalls half way through a file, then finishes it
        growing = folder / "d-growing.wav"
        growing.write_bytes(full[: len(full) // 2])
        time.sleep(1.5)
        with growing.open("ab") as f:
            f.write(full[len(full) // 2 :])

    thread = threading.Thread(target=writer)
    out = io.StringIO()
    monitor = Monitor(Detector.load(field_detector), MonitorSettings(window=1.0, hop=1.0), out=out)
    source = FolderSource(folder, "fan/id_00", 16000, poll=0.1, settle=0.3, idle_timeout=3.0)
    with caplog.at_level(logging.INFO, logger="ssad"):
        thread.start()
        monitor.run(source)
    thread.join()
    streams = [Path(r["stream"]).name for r in _lines(out.getvalue())]
    assert streams == ["a-good.wav", "d-growing.wav"]
    assert "b-truncated.wav: truncated" in caplog.text
    assert "c-wrong-format.wav: not a readable audio file" in caplog.text
    assert "d-growing.wav: truncated" in caplog.text  # seen while stalled, reported, read again once complete


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "service-stop"])
def test_ctrl_c_or_a_service_stop_ends_cleanly_and_keeps_what_was_scored(field_detector: Path, signum: int) -> None:
    command = [sys.executable, "-m", "ssad.cli", "monitor", "--detector", str(field_detector), "--machine",
               "fan/id_00", "--source", "-", "--window", "1", "--hop", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    # a job started in the background by a script inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: start the monitor as a terminal's foreground job would, SIGINT at its default
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.stdin.write(tone(3.0).tobytes() + b"\x00")  # an odd byte: half a sample waits for its other half
    process.stdin.flush()
    first = process.stdout.readline()  # blocks until the monitor has scored its first window
    assert json.loads(first)["machine"] == "fan/id_00"
    # on a busy machine the other two windows may take a while; the stream stays open, so only the signal ends it
    seen = [first, process.stdout.readline(), process.stdout.readline()]
    process.send_signal(signum)
    process.wait(timeout=60)  # stdin stays open until the monitor has stopped: closing it first races the signal
    out, err = process.stdout.read(), process.stderr.read()
    process.stdin.close()
    rows = _lines(b"".join(seen).decode() + out.decode())
    assert process.returncode == 130, err.decode()
    assert [r["start"] for r in rows] == [0.0, 1.0, 2.0]
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()


def test_a_scorer_the_detector_lacks_is_refused_naming_those_it_has(field_detector: Path) -> None:
    from ssad.core.errors import SsadError

    detector = Detector.load(field_detector)
    with pytest.raises(SsadError, match=r"no scorer 'nope' in this detector; it has \["):
        Monitor(detector, MonitorSettings(window=1.0, hop=1.0), scorer="nope", out=io.StringIO())
