"""Fixtures of the live-monitor tests: a tiny saved detector, WAV bytes, a real mosquitto broker on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

#: how the tests find the broker when /usr/sbin is not on PATH (Debian installs it there)
BROKER_PLACES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


@pytest.fixture(scope="session")
def field_detector(tiny_run: Path, tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector fitted on the tiny set's training clips (2 s clips) and saved, as `ssad detector` does."""
    from ssad.detector import Detector

    out = tmp_path_factory.mktemp("field-detector")
    Detector.fit(tiny_run, tiny_root).save(out)
    return out


def wav_bytes(samples: np.ndarray, rate: int = 16000, *, format_tag: int = 1, bits: int = 16,
              declared: int | None = None) -> bytes:
    """A WAV file's bytes with a hand-made header: `declared` samples announced, any format tag and width."""
    data = np.asarray(samples).astype("<i2").tobytes() if bits == 16 else bytes(len(samples) * bits // 8)
    block = bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, 1, rate, rate * block, block, bits)
    size = (len(samples) if declared is None else declared) * block
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", size) + data)


def tone(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """int16 test audio: a hum with a little noise."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.05, len(t))
    return (np.clip(0.3 * np.sin(2 * np.pi * 120 * t) + noise, -1, 1) * 32767).astype(np.int16)


def mosquitto_path() -> str:
    """The broker executable; a test needing it FAILS when it is missing: `make setup` installs it."""
    found = shutil.which("mosquitto") or next((p for p in BROKER_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail("mosquitto is not installed: `make setup` installs it as root with apt "
                    "(else: apt-get install mosquitto / brew install mosquitto)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A mosquitto broker on 127.0.0.1 on a free port, stopped after the test; yields the port."""
    exe = mosquitto_path()
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    log = (tmp_path / "broker.log").open("w")
    process = subprocess.Popen([exe, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"mosquitto did not start: {(tmp_path / 'broker.log').read_text()}")
            time.sleep(0.1)
    yield port
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
