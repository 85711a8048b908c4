"""Read clips safely: every unusable file becomes a clear BadInputError instead of a libsndfile trace or silent garbage."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf

from ssad.audio.screening import screen
from ssad.core.errors import BadInputError

__all__ = [
    "DEFAULT_N_FFT",
    "DEFAULT_SAMPLE_RATE",
    "LENGTH_POLICIES",
    "AudioInfo",
    "ClipBatch",
    "audio_info",
    "load_clip",
    "log_conversions",
    "pcm16_to_float",
    "read_native",
    "read_clip",
    "read_clips",
]

#: What `read_clip` does with a clip shorter than `num_samples`.
LENGTH_POLICIES = ("repeat", "zero", "error")

log = logging.getLogger("ssad")

#: The rate clips are read at unless a model says otherwise, and the log-mel's default FFT size: the shortest clip
#: features can be computed from (the field's common setting, as in the DCASE 2020 baseline).
DEFAULT_SAMPLE_RATE = 16000
DEFAULT_N_FFT = 1024

_UNKNOWN_SIZE = 0xFFFFFFFF
_PCM_16_SCALE = 1.0 / 32768.0  # libsndfile's normalisation of 16-bit samples to [-1, 1)
_WAV_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: rate, channels, length, encoding."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    subtype: str
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


class ClipBatch(NamedTuple):
    """What `read_clips` returns: good waveforms, (path, why) for each bad file, and the input index of each waveform."""

    waves: list[np.ndarray]
    problems: list[tuple[str, str]]
    kept: list[int]


def _bad(path: Path, why: str) -> BadInputError:
    """A BadInputError about one file."""
    return BadInputError([(path, why)])


def _wav_problem(path: Path) -> str | None:
    """Why a .wav file is not WAV or is cut short, or None; libsndfile silently reads only the frames present."""
    size_on_disk = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        is_wave = head[:4] in _WAV_MAGIC and head[8:12] == b"WAVE"
        # libsndfile sniffs content, so garbage in a .wav may pass for MP3 and fail with a misleading reason.
        if path.suffix.lower() == ".wav" and not is_wave:
            return "not a readable audio file (no RIFF/WAVE header)"
        if head[:4] != b"RIFF" or not is_wave:
            return None
        block_align = 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mean "length unknown" (streaming writers, RF64); nothing to compare with.
                if size in (0, _UNKNOWN_SIZE):
                    return None
                present = size_on_disk - f.tell()
                if present >= size:
                    return None
                if block_align:
                    return (
                        f"truncated: header announces {size // block_align} samples, "
                        f"file holds {present // block_align}"
                    )
                return f"truncated: header announces {size} bytes of audio, file holds {present}"
            if chunk_id == b"fmt ":
                fmt = f.read(min(size, 16))
                if len(fmt) < min(size, 16):
                    return "truncated: file ends inside its WAV header"
                if len(fmt) >= 14:
                    block_align = int.from_bytes(fmt[12:14], "little")
                f.seek(size - len(fmt) + (size & 1), 1)
            else:
                f.seek(size + (size & 1), 1)


def _check_file(path: Path) -> None:
    """Raise BadInputError if path is missing, not a file, 0 bytes, a .wav without WAV header, or a truncated WAV."""
    if not path.exists():
        raise _bad(path, "no such file")
    if not path.is_file():
        raise _bad(path, "is a folder, not a file")
    try:
        if path.stat().st_size == 0:
            raise _bad(path, "empty: no samples (0-byte file)")
        why = _wav_problem(path)
    except OSError as err:
        raise _bad(path, f"cannot open ({err.strerror or err})") from None
    if why:
        raise _bad(path, why)


def _unreadable(path: Path, err: Exception) -> BadInputError:
    """A BadInputError carrying libsndfile's short reason rather than its full message."""
    reason = getattr(err, "error_string", None) or str(err)
    return _bad(path, f"not a readable audio file ({reason.strip().rstrip('.')})")


def audio_info(path: str | Path) -> AudioInfo:
    """Header facts about one file (no samples read), after the same file checks as `read_clip`."""
    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        raise _unreadable(path, err) from None
    return AudioInfo(
        path, int(info.samplerate), int(info.channels), int(info.frames), info.subtype, info.format
    )


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """16-bit integer samples -> float32 in [-1, 1), libsndfile's scale (numpy's conversion is ~3x faster)."""
    out = samples.astype(np.float32)
    out *= np.float32(_PCM_16_SCALE)  # in place: a second fresh array costs page faults, not just a pass
    return out


def read_native(path: str | Path) -> tuple[np.ndarray, AudioInfo]:
    """All samples at the file's own rate as float32 (frames, channels), validated, with the header facts."""
    path = Path(path)
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as f:
            info = AudioInfo(path, int(f.samplerate), int(f.channels), int(f.frames), f.subtype, f.format)
            if info.subtype == "PCM_16":
                data = pcm16_to_float(f.read(dtype="int16", always_2d=True))
            else:
                data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise _unreadable(path, err) from None
    except OSError as err:
        raise _bad(path, f"cannot open ({err.strerror or err})") from None
    if len(data) == 0:
        raise _bad(path, "empty: no samples")
    if len(data) < info.frames:
        raise _bad(path, f"truncated: header announces {info.frames} samples, file holds {len(data)}")
    if info.subtype != "PCM_16" and not np.isfinite(data).all():
        raise _bad(path, f"contains NaN or infinite samples ({data.size - int(np.isfinite(data).sum())} of {data.size})")
    return data, info


@functools.lru_cache(maxsize=8)
def _resampler(orig: int, new: int) -> Any:
    """torchaudio's Resample, cached so its sinc kernel is built once per rate pair, not on every clip."""
    import torchaudio.transforms

    return torchaudio.transforms.Resample(orig, new)


def load_clip(path: str | Path, *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> tuple[np.ndarray, AudioInfo]:
    """One clip as a mono float32 waveform at `sample_rate` (channels averaged, resampled), with its header facts."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} must be a positive number of Hz")
    data, info = read_native(path)
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if info.sample_rate != sample_rate:
        import torch

        with torch.no_grad():
            wave = _resampler(info.sample_rate, sample_rate)(
                torch.from_numpy(np.ascontiguousarray(wave))
            ).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32), info


def read_clip(
    path: str | Path,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    num_samples: int | None = None,
    length_policy: str = "repeat",
) -> np.ndarray:
    """One clip as a mono float32 waveform at `sample_rate`, optionally fixed to `num_samples` (crop or `length_policy`)."""
    if length_policy not in LENGTH_POLICIES:
        raise ValueError(f"length_policy={length_policy!r} is not one of {', '.join(LENGTH_POLICIES)}")
    if num_samples is not None and num_samples <= 0:
        raise ValueError(f"num_samples={num_samples!r} must be positive or None")
    wave, _ = load_clip(path, sample_rate=sample_rate)
    if num_samples is not None:
        if len(wave) > num_samples:
            wave = wave[:num_samples]
        elif len(wave) < num_samples:
            if length_policy == "error":
                raise _bad(
                    Path(path), f"too short: {len(wave)} samples at {sample_rate} Hz, need {num_samples}"
                )
            if length_policy == "zero":
                wave = np.pad(wave, (0, num_samples - len(wave)))
            else:
                wave = np.tile(wave, -(-num_samples // len(wave)))[:num_samples]
    return np.ascontiguousarray(wave, dtype=np.float32)


def _some_names(infos: Sequence[AudioInfo], most: int = 3) -> str:
    names = [i.path.name for i in infos[:most]]
    return ", ".join(names) + (f" and {len(infos) - most} more" if len(infos) > most else "")


def log_conversions(infos: Sequence[AudioInfo], sample_rate: int) -> None:
    """Log which clips are resampled to `sample_rate` and which are averaged to mono, when any are."""
    resampled = [i for i in infos if i.sample_rate != sample_rate]
    if resampled:
        rates = ", ".join(f"{r} Hz" for r in sorted(Counter(i.sample_rate for i in resampled)))
        log.info("%d clip(s) at %s resampled to %d Hz (%s)", len(resampled), rates, sample_rate,
                 _some_names(resampled))
    several = [i for i in infos if i.channels != 1]
    if several:
        channels = ", ".join(str(c) for c in sorted(Counter(i.channels for i in several)))
        log.info("%d clip(s) with %s channels averaged to mono (%s)", len(several), channels, _some_names(several))


def read_clips(
    paths: Sequence[str | Path], *, skip_bad: bool = False, progress: bool = False, **read_kwargs: Any
) -> ClipBatch:
    """Read many clips, gathering every bad file: raise one BadInputError listing all, or skip them if `skip_bad`.

    Returns a `ClipBatch` (unpacks as ``waves, problems, kept``): `kept[i]` is the index in `paths` of `waves[i]`.
    `read_kwargs` go to `read_clip`.
    """
    paths = list(paths)
    screened = screen(paths, lambda path: (read_clip(path, **read_kwargs), None),
                      progress="reading clips" if progress else None)
    waves, problems, kept = screened.results, screened.problems, screened.positions
    if problems and not skip_bad:
        raise BadInputError(problems, header=f"cannot read audio ({len(paths)} clips tried)")
    return ClipBatch(waves, problems, kept)
