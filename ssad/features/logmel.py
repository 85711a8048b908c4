"""Log-mel spectrograms: the one place where ssad turns waveforms into the features every model sees.

The transform (`LogMel`) and the windows models read (`sliding_windows`); `ssad.features.cache` keeps
computed log-mels on disk, `ssad.features.extract` computes them for many files in batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from ssad.audio.reading import DEFAULT_N_FFT, DEFAULT_SAMPLE_RATE

__all__ = ["LogMel", "sliding_windows", "window_starts"]

# The field's common setting (DCASE 2020 baseline, STgram-MFN): 128 mels, n_fft 1024 (with the rate, in
# ssad.audio.reading, which checks clips against it before torch is loaded), hop 512.
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


def window_starts(frames: int, window: int, hop: int, *, to_end: bool = False) -> list[int]:
    """First frame of each window `sliding_windows` takes of a clip of `frames` frames (0 for a clip shorter
    than one window)."""
    starts = list(range(0, max(frames - window, 0) + 1, hop))
    if to_end and frames > window and starts[-1] != frames - window:
        starts.append(frames - window)
    return starts


def sliding_windows(log_mel: Tensor, window: int, hop: int, *, to_end: bool = False) -> Tensor:
    """(..., n_mels, frames) -> (..., windows, n_mels, window): every `hop`-th window of `window` frames.

    The windows are a strided view of `log_mel` (no copy; overlapping windows share frames). A clip
    shorter than one window is padded by repeating it, so every clip yields at least one window. With
    `to_end`, one more window ends at the clip's last frame wherever the hop leaves frames over, so that
    every frame is heard (a copy then).
    """
    if window <= 0 or hop <= 0:
        msg = f"window and hop must be positive, got window={window}, hop={hop}"
        raise ValueError(msg)
    frames = log_mel.shape[-1]
    if frames < window:
        repeats = -(-window // frames)
        log_mel = log_mel.repeat(*([1] * (log_mel.dim() - 1)), repeats)[..., :window]
    windows = log_mel.unfold(-1, window, hop).transpose(-3, -2)
    if len(window_starts(frames, window, hop, to_end=to_end)) > windows.shape[-3]:  # the end window
        windows = torch.cat([windows, log_mel[..., frames - window :].unsqueeze(-3)], dim=-3)
    return windows
