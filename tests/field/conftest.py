"""Fixtures of the live-monitor tests: a tiny saved detector, WAV bytes, a real mosquitto broker on a free port."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ssad.field.broker import LocalBroker


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
    from ssad.core.errors import SsadError
    from ssad.field.broker import mosquitto_path as find

    try:
        return find()
    except SsadError as error:
        pytest.fail(str(error))


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A mosquitto on 127.0.0.1 on a free port that a test may stop and start again; stopped after the test."""
    mosquitto_path()
    broker = LocalBroker(tmp_path / "broker", persistence=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(local_broker: LocalBroker) -> int:
    """A mosquitto broker on 127.0.0.1 on a free port, stopped after the test; its port."""
    return local_broker.port
