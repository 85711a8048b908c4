"""Tests for the log-mel front end's feature cache and batched computation (ssad.features)."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ssad.core.errors import BadInputError
from ssad.features import FeatureCache, LogMel, compute_log_mels
from ssad.features import extract as features

SAMPLE_RATE = 16000


def _write_wav(path: Path, wave: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")
    return path


def _noise(seed: int, seconds: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(SAMPLE_RATE * seconds)).astype(np.float32)


def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class CountingReader:
    """A `read` callable that counts its calls, reading WAVs with soundfile."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> np.ndarray:
        self.calls.append(path)
        wave, _ = sf.read(str(path), dtype="float32")
        return wave


@pytest.fixture
def small_log_mel() -> LogMel:
    return LogMel(n_fft=512, hop_length=256, n_mels=32)


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    lengths = [0.5, 0.5, 0.3, 0.5, 0.3, 0.5, 0.5, 0.2, 0.5, 0.3]
    return [_write_wav(tmp_path / "audio" / f"clip_{i:02d}.wav", _noise(i, s)) for i, s in enumerate(lengths)]


@pytest.mark.parametrize("freq", [500.0, 1000.0, 3000.0])
def test_tone_energy_lands_in_its_mel_band(freq: float) -> None:
    log_mel = LogMel()
    wave = torch.from_numpy(_tone(freq))
    out = log_mel(wave)
    assert out.shape == (128, log_mel.num_frames(wave.shape[0]))
    assert torch.isfinite(out).all()
    fft_bin = round(freq / (SAMPLE_RATE / log_mel.n_fft))
    expected_band = int(log_mel.mel_filters[fft_bin].argmax())
    loudest_band = int(out.mean(dim=-1).argmax())
    assert abs(loudest_band - expected_band) <= 1
    # The tone stands far above bands an octave away.
    far_band = int(log_mel.mel_filters[fft_bin * 2].argmax()) if fft_bin * 2 < 513 else 0
    assert out.mean(dim=-1)[loudest_band] - out.mean(dim=-1)[far_band] > 30


def test_silence_sits_at_the_log_floor() -> None:
    log_mel = LogMel(log_floor=1e-10)
    out = log_mel(torch.zeros(2, 4000))
    assert out.shape == (2, 128, log_mel.num_frames(4000))
    torch.testing.assert_close(out, torch.full_like(out, -100.0))


def test_cache_hit_returns_identical_arrays_without_reading(
    tmp_path: Path, clips: list[Path], small_log_mel: LogMel
) -> None:
    cache = FeatureCache(tmp_path / "cache", small_log_mel.params)
    reader = CountingReader()
    first = compute_log_mels(clips, small_log_mel, read=reader, cache=cache, batch_size=4, progress=False)
    assert len(reader.calls) == len(clips)
    again = CountingReader()
    second = compute_log_mels(clips, small_log_mel, read=again, cache=cache, batch_size=4, progress=False)
    assert again.calls == []
    for a, b in zip(first, second, strict=True):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for path, array in zip(clips, first, strict=True):
        np.testing.assert_array_equal(cache.get(path), array)


@pytest.mark.parametrize("change", [{"n_mels": 64}, {"hop_length": 128}, {"f_max": 7000.0}])
def test_changed_feature_parameter_misses(tmp_path: Path, clips: list[Path], change: dict) -> None:
    params = LogMel(n_fft=512, hop_length=256, n_mels=32).params
    cache = FeatureCache(tmp_path / "cache", params)
    cache.put(clips[0], np.ones((32, 5), dtype=np.float32))
    assert cache.get(clips[0]) is not None
    other = FeatureCache(tmp_path / "cache", {**params, **change})
    assert other.key(clips[0]) != cache.key(clips[0])
    assert other.get(clips[0]) is None


def test_changed_read_parameter_misses(tmp_path: Path, clips: list[Path], small_log_mel: LogMel) -> None:
    cache = FeatureCache(
        tmp_path / "cache", small_log_mel.params, {"sample_rate": 16000, "num_samples": None}
    )
    cache.put(clips[0], np.ones((32, 5), dtype=np.float32))
    other = FeatureCache(
        tmp_path / "cache", small_log_mel.params, {"sample_rate": 16000, "num_samples": 8000}
    )
    assert other.get(clips[0]) is None


def test_equal_numbers_in_params_share_a_key(tmp_path: Path, clips: list[Path]) -> None:
    a = FeatureCache(tmp_path / "cache", {"power": 2, "n_mels": 128, "f_max": None})
    b = FeatureCache(tmp_path / "cache", {"n_mels": 128.0, "f_max": None, "power": 2.0})
    assert a.key(clips[0]) == b.key(clips[0])


def test_unserialisable_params_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feature_params.window"):
        FeatureCache(tmp_path, {"window": object()})
    with pytest.raises(ValueError, match="dicts"):
        FeatureCache(tmp_path, [("n_mels", 128)])  # type: ignore[arg-type]


def test_changed_file_content_misses_and_renamed_file_hits(
    tmp_path: Path, clips: list[Path], small_log_mel: LogMel
) -> None:
    cache = FeatureCache(tmp_path / "cache", small_log_mel.params)
    stored = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put(clips[0], stored)
    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    moved.write_bytes(clips[0].read_bytes())
    np.testing.assert_array_equal(cache.get(moved), stored)
    _write_wav(clips[0], _noise(99))
    assert cache.get(clips[0]) is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_entry_is_a_miss_and_is_rewritten(
    tmp_path: Path, clips: list[Path], small_log_mel: LogMel, damage: str
) -> None:
    cache = FeatureCache(tmp_path / "cache", small_log_mel.params)
    good = compute_log_mels(clips[:1], small_log_mel, read=CountingReader(), cache=cache, progress=False)[0]
    entry = cache.entry_path(cache.key(clips[0]))
    data = entry.read_bytes()
    entry.write_bytes(
        {"garbage": b"not a numpy file at all" * 10, "truncated": data[: len(data) // 2], "empty": b""}[
            damage
        ]
    )
    assert cache.get(clips[0]) is None
    reader = CountingReader()
    again = compute_log_mels(clips[:1], small_log_mel, read=reader, cache=cache, progress=False)[0]
    assert reader.calls == [clips[0]]
    np.testing.assert_array_equal(again, good)
    np.testing.assert_array_equal(np.load(entry, allow_pickle=False), good)


def test_put_leaves_no_temporary_files(tmp_path: Path, clips: list[Path], small_log_mel: LogMel) -> None:
    cache = FeatureCache(tmp_path / "cache", small_log_mel.params)
    compute_log_mels(clips, small_log_mel, read=CountingReader(), cache=cache, batch_size=3, progress=False)
    stored = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(stored) == len({cache.key(p) for p in clips})
    assert all(p.suffix == ".npy" and not p.name.startswith(".") for p in stored)


def test_interrupted_put_leaves_no_entry_and_no_temporary_file(
    tmp_path: Path, clips: list[Path], small_log_mel: LogMel, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path / "cache", small_log_mel.params)

    def failing_save(file, arr, allow_pickle=True):  # type: ignore[no-untyped-def]
        file.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(features.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        cache.put(clips[0], np.ones((4, 4), dtype=np.float32))
    monkeypatch.undo()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    assert cache.get(clips[0]) is None


def test_key_reads_the_file_once(tmp_path: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path / "cache", {"n_mels": 32})
    long_clip = _write_wav(tmp_path / "long.wav", _noise(7, seconds=10.0))
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(long_clip):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    cache.get(long_clip)
    assert len(opened) == 1
    opened.clear()
    cache.put(long_clip, np.zeros((2, 2), dtype=np.float32))
    assert len(opened) == 1


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", {"n_mels": 32})
    with pytest.raises(BadInputError, match="missing.wav"):
        cache.key(tmp_path / "missing.wav")


def test_batch_sizes_agree_and_match_one_by_one(clips: list[Path], small_log_mel: LogMel) -> None:
    one = compute_log_mels(clips, small_log_mel, read=CountingReader(), batch_size=1, progress=False)
    seven = compute_log_mels(clips, small_log_mel, read=CountingReader(), batch_size=7, progress=False)
    assert len(one) == len(seven) == len(clips)
    for path, a, b in zip(clips, one, seven, strict=True):
        wave, _ = sf.read(str(path), dtype="float32")
        assert a.shape == (32, small_log_mel.num_frames(len(wave)))
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
        direct = small_log_mel(torch.from_numpy(wave)).numpy()
        np.testing.assert_allclose(a, direct, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cores", [2, 8])
def test_inline_and_read_ahead_paths_give_the_same_features(
    clips: list[Path], small_log_mel: LogMel, monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    """Two cores read inline, more keep a reader thread ahead: the same arrays in the same order either way."""
    threads_seen: list[int] = []
    read_ahead = features._read_ahead

    def spy(load, count, threads, depth):  # noqa: ANN001, ANN202
        threads_seen.append(threads)
        return read_ahead(load, count, threads, depth)

    monkeypatch.setattr(features, "available_cores", lambda: cores)
    monkeypatch.setattr(features, "_read_ahead", spy)
    out = compute_log_mels(clips, small_log_mel, read=CountingReader(), batch_size=3, progress=False)
    assert threads_seen == [0 if cores == 2 else 1]
    for path, array in zip(clips, out, strict=True):
        wave, _ = sf.read(str(path), dtype="float32")
        np.testing.assert_allclose(array, small_log_mel(torch.from_numpy(wave)).numpy(), rtol=0, atol=1e-4)


def test_many_distinct_lengths_stay_in_order(tmp_path: Path, small_log_mel: LogMel) -> None:
    paths = [_write_wav(tmp_path / f"{i}.wav", _noise(i, 0.1 + 0.01 * i)) for i in range(12)]
    out = compute_log_mels(paths, small_log_mel, read=CountingReader(), batch_size=2, progress=False)
    for i, array in enumerate(out):
        assert array.shape[1] == small_log_mel.num_frames(int(SAMPLE_RATE * (0.1 + 0.01 * i)))


def test_compute_log_mels_checks_arguments(clips: list[Path], small_log_mel: LogMel) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        compute_log_mels(clips, small_log_mel, read=CountingReader(), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="1-D"):
        compute_log_mels(clips, small_log_mel, read=lambda p: np.zeros((2, 100), np.float32), progress=False)


def test_compute_log_mels_moves_module_to_device(clips: list[Path], small_log_mel: LogMel) -> None:
    out = compute_log_mels(clips[:2], small_log_mel, read=CountingReader(), device="cpu", progress=False)
    assert small_log_mel.mel_filters.device.type == "cpu"
    assert all(isinstance(a, np.ndarray) for a in out)


@pytest.mark.parametrize("frames", [5, 40])
def test_sliding_windows_of_a_batch_equal_those_of_each_clip(frames: int) -> None:
    from ssad.features import sliding_windows

    batch = torch.randn(3, 8, frames)
    windows = sliding_windows(batch, 16, 8)
    assert windows.shape[0] == 3 and windows.shape[2:] == (8, 16)
    for clip, clip_windows in zip(batch, windows, strict=True):
        assert torch.equal(sliding_windows(clip, 16, 8), clip_windows)


@pytest.mark.parametrize(("frames", "starts"), [(5, [0]), (16, [0]), (40, [0, 8, 16, 24]), (43, [0, 8, 16, 24, 27])])
def test_windows_to_the_end_hear_every_frame_and_say_where_they_start(frames: int, starts: list[int]) -> None:
    from ssad.features import sliding_windows, window_starts

    batch = torch.arange(2 * 8 * frames, dtype=torch.float32).reshape(2, 8, frames)
    windows = sliding_windows(batch, 16, 8, to_end=True)
    assert window_starts(frames, 16, 8, to_end=True) == starts
    assert windows.shape == (2, len(starts), 8, 16)
    if frames >= 16:
        for k, start in enumerate(starts):
            assert torch.equal(windows[:, k], batch[..., start : start + 16])
        assert torch.equal(windows[:, -1, :, -1], batch[..., -1])  # the clip's last frame is in a window
    plain = sliding_windows(batch, 16, 8)  # without: the stride windows alone, the last 3 of 43 frames unheard
    assert window_starts(frames, 16, 8) == list(range(0, max(frames - 16, 0) + 1, 8))
    assert torch.equal(windows[:, : plain.shape[1]], plain)


def test_an_encoder_saved_before_the_end_window_keeps_its_windows(tmp_path: Path) -> None:
    """A model whose metadata predates `window_to_end` scores as it did, so thresholds fitted on it stay right."""
    from ssad.encoder import Encoder
    from ssad.models.spectral.lightning_model import SpectralStatsModule

    module = SpectralStatsModule(n_mels=8)
    metadata = {"feature_params": {"n_mels": 8}, "window_frames": 16, "window_hop": 8}
    log_mel = torch.randn(8, 43)
    old, new = Encoder(module, metadata), Encoder(module, metadata | {"window_to_end": True})
    assert old.window_to_end is False and len(old._windows(log_mel)) == 4
    assert new.window_to_end is True and len(new._windows(log_mel)) == 5


@pytest.mark.parametrize("settings", [{}, {"n_mels": 24, "power": 1.0}, {"n_mels": 3, "n_fft": 256, "hop_length": 100}])
def test_cpu_clip_by_clip_path_matches_the_batched_path_and_the_dense_filterbank(settings: dict) -> None:
    log_mel = LogMel(**settings)
    waves = torch.from_numpy(np.stack([_noise(seed, 0.3) for seed in range(6)])).reshape(2, 3, -1)
    with torch.inference_mode():
        clip_by_clip = log_mel(waves)
        batched = log_mel.log_mel_from_spectrogram(log_mel.spectrogram(waves))
        spectrogram = log_mel.spectrogram(waves)
        dense = torch.log10(spectrogram.transpose(-1, -2) @ log_mel.mel_filters + log_mel.log_floor)
    assert clip_by_clip.shape == batched.shape == (2, 3, log_mel.n_mels, log_mel.num_frames(waves.shape[-1]))
    torch.testing.assert_close(clip_by_clip, batched, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(batched, dense.transpose(-1, -2) * (20.0 / log_mel.power), atol=1e-4, rtol=1e-5)
    one = log_mel(waves[1, 2])  # a single 1-D clip keeps its shape
    torch.testing.assert_close(one, batched[1, 2], atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="one length"):
        log_mel.clip_by_clip([waves[0, 0], waves[0, 0, :-300]])
