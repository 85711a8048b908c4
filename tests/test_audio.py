"""Tests of ssad.audio.reading: resampling, downmixing, length policies, and every kind of unusable file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssad.audio.reading import LENGTH_POLICIES, audio_info, read_clip, read_clips, read_native
from ssad.core.errors import BadInputError


def write(path: Path, data: np.ndarray, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """Write data (frames[, channels]) to path and return it."""
    sf.write(path, data, sample_rate, subtype=subtype)
    return path


def ramp(n: int) -> np.ndarray:
    """n distinct float32 values in [0, 0.5) that survive float storage exactly enough to compare."""
    return (np.arange(n, dtype=np.float32) / (2 * n)).astype(np.float32)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """One second of a 16-bit 16 kHz tone."""
    t = np.arange(16000) / 16000
    return write(tmp_path / "good.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))


def error_of(path: Path, **kwargs: object) -> BadInputError:
    """The BadInputError read_clip raises for path, checked to name the file."""
    with pytest.raises(BadInputError) as info:
        read_clip(path, **kwargs)
    assert path.name in str(info.value)
    assert info.value.problems[0][0] == str(path)
    return info.value


# --- reading good files ----------------------------------------------------------------------------


def test_reads_mono_float32(good: Path) -> None:
    wave = read_clip(good)
    assert wave.dtype == np.float32 and wave.shape == (16000,)
    assert np.abs(wave).max() == pytest.approx(0.5, abs=1e-3)


def test_resampling_keeps_frequency_and_duration(tmp_path: Path) -> None:
    t = np.arange(int(44100 * 1.5)) / 44100
    path = write(tmp_path / "tone44k.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    wave = read_clip(path, sample_rate=16000)
    assert wave.dtype == np.float32 and wave.shape == (24000,)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    peak_hz = np.argmax(spectrum) * 16000 / len(wave)
    assert peak_hz == pytest.approx(440, abs=1)
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left = (0.5 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    path = write(tmp_path / "stereo.wav", np.stack([left, -left], axis=1), subtype="FLOAT")
    assert audio_info(path).channels == 2
    np.testing.assert_allclose(read_clip(path), 0.0, atol=1e-7)
    path = write(tmp_path / "stereo2.wav", np.stack([left, np.zeros_like(left)], axis=1), subtype="FLOAT")
    np.testing.assert_allclose(read_clip(path), left / 2, atol=1e-7)


def test_all_zero_clip_is_legal(tmp_path: Path) -> None:
    path = write(tmp_path / "silent.wav", np.zeros(1600, np.float32))
    assert not read_clip(path).any()


def test_length_policies(tmp_path: Path) -> None:
    data = ramp(1000)
    path = write(tmp_path / "short.wav", data, subtype="FLOAT")
    np.testing.assert_array_equal(read_clip(path, num_samples=300), data[:300])
    np.testing.assert_array_equal(read_clip(path, num_samples=1000), data)
    np.testing.assert_array_equal(read_clip(path, num_samples=2500), np.concatenate([data, data, data[:500]]))
    zero = read_clip(path, num_samples=2500, length_policy="zero")
    np.testing.assert_array_equal(zero, np.concatenate([data, np.zeros(1500, np.float32)]))
    assert zero.dtype == np.float32
    err = error_of(path, num_samples=2500, length_policy="error")
    assert "too short: 1000 samples at 16000 Hz, need 2500" in str(err)
    assert read_clip(path, num_samples=300, length_policy="error").shape == (300,)


def test_length_applies_after_resampling(tmp_path: Path) -> None:
    path = write(tmp_path / "at8k.wav", np.full(800, 0.25, np.float32), 8000, subtype="FLOAT")
    assert read_clip(path, sample_rate=16000, num_samples=1600, length_policy="error").shape == (1600,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length_policy": "pad"}, "length_policy='pad' is not one of " + ", ".join(LENGTH_POLICIES)),
        ({"sample_rate": 0}, "sample_rate=0 must be"),
        ({"num_samples": -5}, "num_samples=-5 must be"),
    ],
)
def test_invalid_arguments(good: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_clip(good, **kwargs)


def test_audio_info(tmp_path: Path) -> None:
    path = write(tmp_path / "info.wav", np.zeros((22050, 2), np.float32), 44100, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.subtype, info.format) == (
        44100,
        2,
        22050,
        "PCM_24",
        "WAV",
    )
    assert info.duration == pytest.approx(0.5)
    data, native = read_native(path)
    assert data.shape == (22050, 2) and native == info


def test_wav_with_odd_chunks_around_data_is_not_truncated(tmp_path: Path) -> None:
    samples = (np.arange(100, dtype=np.int16) * 100).tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"junk"
        + struct.pack("<I", 3)
        + b"abc\0"
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
        + b"LIST"
        + struct.pack("<I", 4)
        + b"INFO"
    )
    path = tmp_path / "chunks.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert read_clip(path).shape == (100,)


# --- bad files ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert "missing.wav: no such file" in str(error_of(tmp_path / "missing.wav"))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    # With seed 1 libsndfile would sniff the bytes as MP3 and blame a missing file.
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(seed).bytes(5000))
    assert "noise.wav: not a readable audio file (no RIFF/WAVE header)" in str(error_of(path))


def test_riff_header_over_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbled.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4992) + b"WAVE" + np.random.default_rng(0).bytes(4988))
    assert "garbled.wav: not a readable audio file (Error in WAV file. No 'data' chunk marker)" in str(
        error_of(path)
    )


def test_random_bytes_without_wav_suffix(tmp_path: Path) -> None:
    path = tmp_path / "noise.flac"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    assert "noise.flac: not a readable audio file (Format not recognised)" in str(error_of(path))


def test_truncated_wav(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(good.read_bytes()[:3000])
    assert "cut.wav: truncated: header announces 16000 samples, file holds 1478" in str(error_of(path))
    with pytest.raises(BadInputError, match="cut.wav: truncated"):
        audio_info(path)


@pytest.mark.parametrize("size", [44, 45])
def test_wav_cut_right_after_header(good: Path, tmp_path: Path, size: int) -> None:
    path = tmp_path / "header_only.wav"
    path.write_bytes(good.read_bytes()[:size])
    assert "header_only.wav: truncated: header announces 16000 samples, file holds 0" in str(error_of(path))


def test_wav_cut_inside_header(good: Path, tmp_path: Path) -> None:
    path = tmp_path / "stub.wav"
    path.write_bytes(good.read_bytes()[:20])
    assert "stub.wav: truncated: file ends inside its WAV header" in str(error_of(path))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.touch()
    assert "zero.wav: empty: no samples" in str(error_of(path))


def test_valid_header_with_no_frames(tmp_path: Path) -> None:
    path = write(tmp_path / "noframes.wav", np.zeros(0, np.float32))
    assert "noframes.wav: empty: no samples" in str(error_of(path))


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad_value: float) -> None:
    data = np.zeros(1000, np.float32)
    data[[10, 500]] = bad_value
    path = write(tmp_path / "nonfinite.wav", data, subtype="FLOAT")
    assert "nonfinite.wav: contains NaN or infinite samples (2 of 1000)" in str(error_of(path))


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "dir.wav").mkdir()
    assert "dir.wav: is a folder" in str(error_of(tmp_path / "dir.wav"))


# --- read_clips ---------------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Path, good: Path) -> list[Path]:
    """good, missing, good (short), truncated."""
    short = write(tmp_path / "short.wav", ramp(500), subtype="FLOAT")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:3000])
    return [good, tmp_path / "missing.wav", short, cut]


def test_read_clips_lists_every_bad_file(mixed: list[Path]) -> None:
    with pytest.raises(BadInputError) as info:
        read_clips(mixed)
    assert [p for p, _ in info.value.problems] == [str(mixed[1]), str(mixed[3])]
    assert "missing.wav: no such file" in str(info.value)
    assert "cut.wav: truncated" in str(info.value)


def test_read_clips_skip_bad(mixed: list[Path]) -> None:
    waves, problems, kept = read_clips(mixed, skip_bad=True, progress=True, num_samples=1000)
    assert kept == [0, 2]
    assert [w.shape for w in waves] == [(1000,), (1000,)]
    assert [Path(p).name for p, _ in problems] == ["missing.wav", "cut.wav"]


def test_read_clips_all_good(good: Path) -> None:
    batch = read_clips([good, str(good)])
    assert batch.kept == [0, 1] and batch.problems == [] and len(batch.waves) == 2


def test_read_clips_passes_invalid_arguments_through(good: Path) -> None:
    with pytest.raises(ValueError, match="length_policy"):
        read_clips([good], length_policy="wrap")
