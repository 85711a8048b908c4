"""Log-mel spectrograms: the one place where ssad turns waveforms into the features every model sees."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn
from tqdm import tqdm

from ssad.core.atomic import atomic_path
from ssad.core.errors import BadInputError
from ssad.core.runtime import available_cores, torch_threads
from ssad.data.audio import DEFAULT_N_FFT, DEFAULT_SAMPLE_RATE

T = TypeVar("T")

__all__ = ["LogMel", "sliding_windows", "FeatureCache", "compute_log_mels"]

# The field's common setting (DCASE 2020 baseline, STgram-MFN): 128 mels, n_fft 1024 (with the rate, in
# ssad.data.audio, which checks clips against it before torch is loaded), hop 512.
DEFAULT_HOP_LENGTH = 512
DEFAULT_N_MELS = 128
#: groups of adjacent mel filters whose products with the spectrum run separately, each over its own bins
MEL_BANDS = 8


class LogMel(nn.Module):
    """Waveform batch -> log-mel batch, on whatever device the module and input live on.

    Split in two steps (`spectrogram`, then `log_mel_from_spectrogram`) so that a transform of the
    linear-frequency spectrum, such as the spectral warping of synthesized machine instances, can
    sit between them.

    Args:
        sample_rate: rate of the input waveforms in Hz.
        n_fft: FFT size; the window length too.
        hop_length: samples between frames.
        n_mels: mel bands.
        power: exponent of the magnitude (2 = power spectrum).
        log_floor: added before the logarithm so that silence stays finite.
        f_min: lowest mel filter edge in Hz.
        f_max: highest mel filter edge in Hz (None = Nyquist).
    """

    def __init__(
        self,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        n_fft: int = DEFAULT_N_FFT,
        hop_length: int = DEFAULT_HOP_LENGTH,
        n_mels: int = DEFAULT_N_MELS,
        power: float = 2.0,
        log_floor: float = 1e-10,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        if n_fft <= 0 or hop_length <= 0 or n_mels <= 0 or sample_rate <= 0:
            msg = f"sample_rate, n_fft, hop_length and n_mels must be positive, got {sample_rate}, {n_fft}, {hop_length}, {n_mels}"
            raise ValueError(msg)
        if power <= 0 or log_floor <= 0:
            msg = f"power and log_floor must be positive, got power={power}, log_floor={log_floor}"
            raise ValueError(msg)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.power = power
        self.log_floor = log_floor
        self.f_min = f_min
        self.f_max = f_max
        # torchaudio's Spectrogram defaults: periodic Hann window of n_fft, centred frames, reflect padding.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        filters = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, sample_rate / 2 if f_max is None else f_max, n_mels, sample_rate
        )
        self.register_buffer("mel_filters", filters, persistent=False)
        # Each mel filter is non-zero on a few FFT bins only: the product runs in bands of filters, each over
        # the bins its filters cover (~1/4 of the dense work at 128 mels; the same sums without the zeros).
        self._bands: list[tuple[int, int, int, int]] = []
        for index, columns in enumerate(torch.arange(n_mels).chunk(min(MEL_BANDS, n_mels))):
            first, last = int(columns[0]), int(columns[-1]) + 1
            rows = (filters[:, first:last] != 0).any(dim=1).nonzero().flatten()
            low, high = (int(rows.min()), int(rows.max()) + 1) if rows.numel() else (0, 1)
            self._bands.append((low, high, first, last))
            self.register_buffer(f"mel_band_{index}", filters[low:high, first:last].contiguous(), persistent=False)

    @property
    def params(self) -> dict:
        """The parameters that define these features (to store beside a model or key a cache)."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "power": self.power,
            "log_floor": self.log_floor,
            "f_min": self.f_min,
            "f_max": self.f_max,
        }

    def band_edges_hz(self) -> np.ndarray:
        """(n_mels + 1,) band edges in Hz: f_min, the mel-scale midpoints between filter centres, f_max."""
        # torchaudio's melscale_fbanks (as __init__ calls it) spaces its filters evenly on the HTK mel scale
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        low_mel, top_mel = (2595.0 * np.log10(1.0 + f / 700.0) for f in (self.f_min, top))
        centres = np.linspace(low_mel, top_mel, self.n_mels + 2)[1:-1]
        middles = 700.0 * (10.0 ** ((centres[:-1] + centres[1:]) / 2 / 2595.0) - 1.0)
        return np.concatenate([[self.f_min], middles, [top]]).astype(np.float64)

    def frame_seconds(self) -> float:
        """Seconds between the starts of consecutive frames."""
        return self.hop_length / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        """Frames that `forward` gives for a waveform of `num_samples` samples (centred STFT)."""
        return num_samples // self.hop_length + 1

    def num_samples(self, num_frames: int) -> int:
        """Samples needed for exactly `num_frames` frames."""
        return (num_frames - 1) * self.hop_length

    def spectrogram(self, waveform: Tensor) -> Tensor:
        """(..., samples) -> (..., n_fft // 2 + 1, frames) magnitude to the configured power.

        The same numbers as `torchaudio.transforms.Spectrogram` (periodic Hann window, centred frames,
        reflect padding), computed as one real FFT over frames cut as strided views of the padded
        waveform: `torch.stft(center=True)` pads and frames several times slower on a CPU.
        """
        lead, samples = waveform.shape[:-1], waveform.shape[-1]
        half = self.n_fft // 2
        if samples <= half:
            msg = f"a waveform of {samples} samples is too short for n_fft={self.n_fft} (needs > {half})"
            raise ValueError(msg)
        flat = waveform.reshape(-1, samples)
        # reflect padding by concatenation: F.pad(mode="reflect") is ~3x slower on a CPU
        padded = torch.cat([flat[:, 1 : half + 1].flip(-1), flat, flat[:, -half - 1 : -1].flip(-1)], dim=-1)
        frames = padded.unfold(-1, self.n_fft, self.hop_length)  # (batch, frames, n_fft), a view
        parts = torch.view_as_real(torch.fft.rfft(frames * self.window))
        real, imag = parts[..., 0], parts[..., 1]
        power = torch.addcmul(real * real, imag, imag)
        if self.power != 2.0:
            power = power.pow(self.power / 2.0)
        return power.reshape(*lead, *power.shape[-2:]).transpose(-1, -2)

    def mel(self, spectrogram: Tensor) -> Tensor:
        """(..., freq, frames) -> (..., frames, n_mels): the mel filterbank applied band by band (see __init__)."""
        frames_first = spectrogram.transpose(-1, -2)
        return torch.cat(
            [torch.matmul(frames_first[..., low:high], getattr(self, f"mel_band_{index}"))
             for index, (low, high, _, _) in enumerate(self._bands)],
            dim=-1,
        )

    def log_mel_from_spectrogram(self, spectrogram: Tensor) -> Tensor:
        """(..., freq, frames) -> (..., n_mels, frames) log-mel, as the DCASE baseline: 20/power * log10."""
        mel = self.mel(spectrogram).transpose(-1, -2)
        return torch.log10(mel + self.log_floor).mul_(20.0 / self.power)

    def forward(self, waveform: Tensor) -> Tensor:
        """(..., samples) -> (..., n_mels, frames).

        On a CPU the clips go one at a time through work buffers that are reused (`clip_by_clip`); on
        other devices, and when exported, the whole batch goes through `spectrogram` at once.
        """
        if waveform.device.type != "cpu" or torch.is_grad_enabled() and waveform.requires_grad:
            return self.log_mel_from_spectrogram(self.spectrogram(waveform))
        out = self.clip_by_clip(waveform.reshape(-1, waveform.shape[-1]).unbind(0))
        return out.reshape(*waveform.shape[:-1], *out.shape[-2:])

    def clip_by_clip(self, waves: Sequence[Tensor]) -> Tensor:
        """CPU waveforms of one length, each (samples,) -> (clips, n_mels, frames): the batched path's numbers.

        One clip's frames stay in cache where a batch's do not, and every intermediate array is written
        into buffers made once per call: fresh memory costs page faults that, on the VMs measured, took
        about as long as the FFT itself (see `ssad.core.runtime`).
        """
        if not waves or any(wave.dim() != 1 or wave.shape[0] != waves[0].shape[0] for wave in waves):
            msg = f"clip_by_clip needs 1-D waveforms of one length, got shapes {[tuple(w.shape) for w in waves][:4]}"
            raise ValueError(msg)
        clips, samples, flat = len(waves), waves[0].shape[-1], waves[0]
        half, n_freq = self.n_fft // 2, self.n_fft // 2 + 1
        if samples <= half:
            msg = f"a waveform of {samples} samples is too short for n_fft={self.n_fft} (needs > {half})"
            raise ValueError(msg)
        n_frames = self.num_frames(samples)
        padded = flat.new_empty(samples + 2 * half)
        windowed = flat.new_empty(n_frames, self.n_fft)
        spectrum = torch.empty(n_frames, n_freq, dtype=torch.complex64 if flat.dtype != torch.float64
                               else torch.complex128)
        parts = torch.view_as_real(spectrum)
        power = flat.new_empty(n_frames, n_freq)
        mel = flat.new_empty(clips, self.n_mels, n_frames)
        for index, clip in enumerate(waves):
            padded[half : half + samples] = clip  # reflect padding, as `spectrogram`
            padded[:half] = clip[1 : half + 1].flip(-1)
            padded[half + samples :] = clip[-half - 1 : -1].flip(-1)
            torch.mul(padded.unfold(-1, self.n_fft, self.hop_length), self.window, out=windowed)
            torch.fft.rfft(windowed, out=spectrum)
            torch.mul(parts[..., 0], parts[..., 0], out=power).addcmul_(parts[..., 1], parts[..., 1])
            if self.power != 2.0:
                power.pow_(self.power / 2.0)
            for band, (low, high, first, last) in enumerate(self._bands):  # (mels, frames) rows, in place
                torch.matmul(getattr(self, f"mel_band_{band}").T, power[:, low:high].T, out=mel[index, first:last])
        return mel.add_(self.log_floor).log10_().mul_(20.0 / self.power)


def sliding_windows(log_mel: Tensor, window: int, hop: int) -> Tensor:
    """(..., n_mels, frames) -> (..., windows, n_mels, window): every `hop`-th window of `window` frames.

    The windows are a strided view of `log_mel` (no copy; overlapping windows share frames). A clip
    shorter than one window is padded by repeating it, so every clip yields at least one window.
    """
    if window <= 0 or hop <= 0:
        msg = f"window and hop must be positive, got window={window}, hop={hop}"
        raise ValueError(msg)
    frames = log_mel.shape[-1]
    if frames < window:
        repeats = -(-window // frames)
        log_mel = log_mel.repeat(*([1] * (log_mel.dim() - 1)), repeats)[..., :window]
    return log_mel.unfold(-1, window, hop).transpose(-3, -2)


# Bump when the stored array format or the meaning of a cached entry changes: every old entry then misses.
FEATURE_CACHE_FORMAT = 1
_HASH_CHUNK_BYTES = 1 << 20


def _canonical(value: object, where: str) -> object:
    """`value` as plain JSON data, numbers as floats, so equal settings hash equally (2 and 2.0 alike)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    msg = f"{where} must be JSON-like (None, bool, number, str, list, dict), got {type(value).__name__}: {value!r}"
    raise ValueError(msg)


class FeatureCache:
    """On-disk cache of per-file feature arrays (one `.npy` each), so repeated runs skip decoding and the STFT.

    An entry's key is the sha256 of the canonical JSON of (`feature_params`, `read_params`, format version)
    followed by the file's bytes: a changed parameter or a changed file misses, while an identical file
    under another name or folder hits. Entries are written to a temporary file and renamed into place, and
    an entry that cannot be loaded counts as a miss, so an interrupted run never leaves a bad hit behind.

    Args:
        directory: where entries live (created as needed), as `<directory>/<key[:2]>/<key>.npy`.
        feature_params: what defines the features, e.g. `LogMel.params`.
        read_params: what defines the waveform read from a file (sample rate, length, length policy).
    """

    def __init__(self, directory: str | Path, feature_params: dict, read_params: dict | None = None) -> None:
        if not isinstance(feature_params, dict) or not (read_params is None or isinstance(read_params, dict)):
            msg = f"feature_params and read_params must be dicts, got {type(feature_params).__name__} and {type(read_params).__name__}"
            raise ValueError(msg)
        self.directory = Path(directory)
        self.feature_params = dict(feature_params)
        self.read_params = dict(read_params or {})
        spec = {
            "format": FEATURE_CACHE_FORMAT,
            "features": _canonical(self.feature_params, "feature_params"),
            "read": _canonical(self.read_params, "read_params"),
        }
        canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
        self._params_digest = hashlib.sha256(canonical.encode()).digest()

    def key(self, path: str | Path) -> str:
        """The entry key of `path` under this cache's parameters (reads the file once)."""
        digest = hashlib.sha256(self._params_digest)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
        except OSError as error:
            raise BadInputError(
                [(path, f"cannot read: {error.strerror or error}")], header="feature cache"
            ) from error
        return digest.hexdigest()

    def entry_path(self, key: str) -> Path:
        """Where the entry for `key` is stored."""
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, path: str | Path, *, key: str | None = None) -> np.ndarray | None:
        """The cached float32 array for `path`, or None on a miss (a corrupt entry is removed and misses)."""
        entry = self.entry_path(key or self.key(path))
        if not entry.is_file():
            return None
        try:
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            array = None
        if not isinstance(array, np.ndarray) or array.dtype != np.float32:
            with contextlib.suppress(OSError):
                entry.unlink()
            return None
        return array

    def put(self, path: str | Path, array: np.ndarray, *, key: str | None = None) -> Path:
        """Store `array` (as float32) as the entry for `path`, atomically; return the entry's path."""
        entry = self.entry_path(key or self.key(path))
        data = np.ascontiguousarray(array, dtype=np.float32)
        with atomic_path(entry) as tmp, open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)
        return entry


def _module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _read_ahead(load: Callable[[int], T], count: int, threads: int, depth: int) -> Iterator[T]:
    """`load(0)`, ..., `load(count - 1)` in order, each started up to `depth` items ahead in `threads` threads.

    libsndfile, numpy and hashlib release the GIL, so decoding the next files overlaps the current STFT.
    The consumer computes a whole batch between pulls, so `depth` must cover a batch or the reader idles
    (measured: 317 clips/s with 2 items ahead, 430 with two batches). `threads=0` loads inline, in order.
    """
    if threads == 0:
        yield from (load(index) for index in range(count))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ssad-read") as pool:
        ahead: deque[Future[T]] = deque()
        submitted = 0
        while submitted < count or ahead:
            while submitted < count and len(ahead) < depth:
                ahead.append(pool.submit(load, submitted))
                submitted += 1
            yield ahead.popleft().result()


def compute_log_mels(
    paths: Sequence[str | Path],
    log_mel: LogMel,
    *,
    read: Callable[[Path], np.ndarray],
    cache: FeatureCache | None = None,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Log-mel spectrograms, (n_mels, frames) float32, one per path in order; cache hits skip reading.

    Misses are read with `read` (a 1-D waveform per file; a few files ahead, in a background thread) and pushed through `log_mel` on `device`
    (default: where `log_mel` already lives) in batches of waveforms of equal length; at most a few
    batches' worth of waveforms are held at once, whatever the number of paths.
    """
    if batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    paths = [Path(p) for p in paths]
    target = torch.device(device) if device is not None else _module_device(log_mel)
    log_mel.to(target)
    results: list[np.ndarray | None] = [None] * len(paths)
    keys: list[str | None] = [None] * len(paths)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    max_pending = 4 * batch_size
    # On a CPU one clip's STFT is too small for intra-op threads to pay (measured beside other work: 264
    # clips/s on one thread, 107 on two). A reader thread keeps ahead of the log-mel when it runs on
    # another device, or when the process has more than two cores: on two, the reader and the log-mel
    # competed for them and reading inline measured faster (550 against 457 clips/s, issue 13).
    readers = 1 if target.type != "cpu" or available_cores() > 2 else 0
    threads = torch_threads(1) if target.type == "cpu" else contextlib.nullcontext()

    with threads, tqdm(total=len(paths), desc="log-mel", unit="clip", disable=not progress) as bar:

        def flush(length: int) -> None:
            items = pending.pop(length)
            with torch.inference_mode():
                if target.type == "cpu":  # LogMel goes clip by clip on a CPU anyway: no batch to stack
                    features = list(log_mel.clip_by_clip([torch.from_numpy(wave) for _, wave in items]).numpy())
                else:
                    batch = torch.from_numpy(np.stack([wave for _, wave in items])).to(target)
                    features = list(log_mel(batch).float().cpu().numpy())
            for (index, _), feature in zip(items, features, strict=True):
                result = np.array(feature, dtype=np.float32, order="C")  # own memory, not a view of a batch
                results[index] = result
                if cache is not None:
                    cache.put(paths[index], result, key=keys[index])
            bar.update(len(items))

        def load(index: int) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
            """(cache key, cached log-mel, waveform): a hit skips the read."""
            key = cache.key(paths[index]) if cache is not None else None
            hit = cache.get(paths[index], key=key) if cache is not None else None
            return key, hit, None if hit is not None else np.asarray(read(paths[index]), dtype=np.float32)

        for index, (key, hit, wave) in enumerate(_read_ahead(load, len(paths), readers, depth=2 * batch_size)):
            path = paths[index]
            keys[index] = key
            if hit is not None:
                results[index] = hit
                bar.update(1)
                continue
            if wave.ndim != 1 or wave.size == 0:
                msg = f"read({path}) must return a non-empty 1-D waveform, got shape {wave.shape}"
                raise ValueError(msg)
            bucket = pending.setdefault(wave.shape[0], [])
            bucket.append((index, wave))
            if len(bucket) >= batch_size:
                flush(wave.shape[0])
            elif sum(len(b) for b in pending.values()) > max_pending:
                flush(max(pending, key=lambda length: len(pending[length])))
        for length in list(pending):
            flush(length)
    return results  # type: ignore[return-value]
