"""The encoder: the one place a recording becomes model outputs. Waveforms -> log-mels -> the network's sliding
windows -> every output, pooled per clip (and kept per window for explanations), the spectral floor's `SPECTRUM`
among them; a backend (ONNX) replaces only the network and log-mel steps."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssad.core.errors import SsadError
from ssad.core.runtime import configure_runtime
from ssad.features import LogMel, sliding_windows
from ssad.models.base import SsadModule
from ssad.models.fused import inference_copy

__all__ = ["LOG_MEL_BATCH", "SPECTRUM", "ClipInput", "Encoder", "ModelOutputs"]

ClipInput = str | Path | np.ndarray | Tensor
#: the clip-level output beside the network's: each band's log-mel mean and std (what the spectral floor scores)
SPECTRUM = "spectrum"
#: clips per log-mel batch: larger batches spill the STFT's frames out of a CPU's cache (measured, bench.md)
LOG_MEL_BATCH = 16


def _spectrum(log_mel: Tensor) -> Tensor:
    """(..., n_mels, frames) -> (..., 2 n_mels): each band's log-mel mean and std over the frames (`SPECTRUM`)."""
    return torch.cat([log_mel.mean(dim=-1), log_mel.std(dim=-1, unbiased=False)], dim=-1)


@dataclass
class ModelOutputs:
    """What `Encoder.encode` gives: every output per clip and, when asked, per window.

    Attributes:
        clips: output name -> (clips, ...) array, one row per clip.
        windows: output name -> (windows, ...) array, every clip's windows stacked in clip order, each row shaped
            like a clip's (None unless asked for).
        window_counts: how many windows each clip has.
    """

    clips: dict[str, np.ndarray]
    windows: dict[str, np.ndarray] | None
    window_counts: list[int]


def _is_single(inputs: object) -> bool:
    """One clip (a path or a 1-D waveform) rather than a list or a 2-D batch."""
    return isinstance(inputs, (str, Path)) or getattr(inputs, "ndim", None) == 1


class Encoder:
    """A trained model with its feature front-end: recordings in, clip-level outputs out.

    Clip-level outputs are means over sliding windows of the model's input size. Build it with `load`.
    """

    def __init__(self, module: SsadModule, metadata: dict[str, Any], device: str | torch.device = "cpu") -> None:
        configure_runtime()  # threads and allocator as the `ssad` command sets them, once per process
        self.module = module.eval()
        self.metadata = metadata
        self.log_mel = LogMel(**metadata["feature_params"])
        self.window_frames = int(metadata["window_frames"])
        self.window_hop = int(metadata["window_hop"])
        #: a last window ends at each clip's last frame (models saved before it existed: absent, so their scores,
        #: and the thresholds fitted on them, stay as they were)
        self.window_to_end = bool(metadata.get("window_to_end", False))
        self._fast: torch.nn.Module | None = None
        self.to(device)

    @property
    def sample_rate(self) -> int:
        """Rate waveforms must have (paths are resampled to it when read)."""
        return self.log_mel.sample_rate

    @property
    def class_names(self) -> list[str]:
        """Classes of a classifier's head; empty for other models."""
        return list(self.metadata.get("class_names") or [])

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        first = next(itertools.chain(self.module.parameters(), self.module.buffers()), None)  # stats: buffers only
        return first.device if first is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Encoder:
        """Move the model and its features to `device` ("auto" = GPU when there is one)."""
        if str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.module.to(device)
        self.log_mel.to(device)
        self._fast = None
        return self

    @property
    def fast_module(self) -> torch.nn.Module:
        """The inference copy of `module` (BatchNorm folded, channels-last), built on first use."""
        if self._fast is None:
            self._fast = inference_copy(self.module)
        return self._fast

    def _waveforms(self, inputs: ClipInput | Sequence[ClipInput], sample_rate: int | None) -> tuple[list[Tensor], bool]:
        """Normalise the accepted inputs to a list of 1-D waveforms; also say whether one clip was given."""
        from ssad.audio.reading import read_clip

        single = _is_single(inputs)
        items = [inputs] if single else list(inputs)
        waves = [torch.from_numpy(read_clip(item, sample_rate=self.sample_rate)) if isinstance(item, (str, Path))
                 else self.waveform(item, sample_rate) for item in items]
        return waves, single

    def waveform(self, wave: np.ndarray | Tensor, sample_rate: int | None = None) -> Tensor:
        """A 1-D waveform as float32 at the model's rate (resampled from `sample_rate` when that differs)."""
        wave = torch.as_tensor(wave, dtype=torch.float32)
        if wave.ndim != 1:
            raise SsadError(f"a waveform must be 1-D (samples), got shape {tuple(wave.shape)}")
        if sample_rate is not None and sample_rate != self.sample_rate:
            import torchaudio

            wave = torchaudio.functional.resample(wave, sample_rate, self.sample_rate)
        return wave

    @torch.no_grad()
    def log_mels(self, inputs: ClipInput | Sequence[ClipInput], sample_rate: int | None = None) -> list[Tensor]:
        """Log-mel (n_mels, frames) of each input, on the model's device; clips of one length go in one batch."""
        waves, _ = self._waveforms(inputs, sample_rate)
        result: list[Tensor | None] = [None] * len(waves)
        by_length: dict[int, list[int]] = {}
        for index, wave in enumerate(waves):
            by_length.setdefault(len(wave), []).append(index)
        for same_length in by_length.values():
            for start in range(0, len(same_length), LOG_MEL_BATCH):
                indices = same_length[start : start + LOG_MEL_BATCH]
                batch = torch.stack([waves[i] for i in indices]).to(self.device)
                for i, log_mel in zip(indices, self.log_mel_batch(batch), strict=True):
                    result[i] = log_mel
        return result  # type: ignore[return-value]

    def log_mel_batch(self, waveforms: Tensor) -> Tensor:
        """Log-mels (batch, n_mels, frames) of same-length waveforms (another backend, e.g. ONNX, replaces this)."""
        return self.log_mel(waveforms)

    def _windows(self, log_mel: Tensor) -> Tensor:
        """(windows, n_mels, window_frames): the sliding windows the network sees of one clip's log-mel."""
        return sliding_windows(log_mel.to(self.device), self.window_frames, self.window_hop, to_end=self.window_to_end)

    @torch.inference_mode()
    def per_window_outputs(self, log_mels: Sequence[Tensor], batch_size: int = 64) -> tuple[dict[str, Tensor], list[int]]:
        """Model outputs of every clip's sliding windows, stacked in clip order, and how many windows each clip has.

        `batch_size` windows go through the network at once: on a CPU, batches of a few dozen windows
        stay in cache and run faster than larger ones.
        """
        windows = [self._windows(m) for m in log_mels]
        counts = [len(w) for w in windows]
        stacked = torch.cat(windows) if windows else torch.empty(0)
        parts: dict[str, list[Tensor]] = {}
        for start in range(0, len(stacked), batch_size):
            for name, value in self.window_outputs(stacked[start : start + batch_size]).items():
                parts.setdefault(name, []).append(value.float())
        return {name: torch.cat(chunks) for name, chunks in parts.items()}, counts

    @torch.inference_mode()
    def encode(self, log_mels: Sequence[Tensor], *, windows: bool = False, batch_size: int = 64) -> ModelOutputs:
        """Every model output a scorer may need, per clip and, with `windows`, per window as clip-shaped rows.

        A clip's outputs are the network's window outputs pooled over its sliding windows (the model says how),
        and `SPECTRUM`, each band's log-mel mean and std over the clip's frames (what the spectral floor,
        `ssad.scoring.SpectrumScorer`, scores). A window's row holds the same outputs of that window alone, of the
        same width as a clip's: the network's from `window_rows` (a classifier pooling its windows' mean and
        spread puts the clip's spread beside each window's embedding), the spectrum over the window's frames.
        So any scorer scores a window as it scores a clip, which is what tells *when* in a clip it rose.
        """
        per_window, counts = self.per_window_outputs(log_mels, batch_size)
        clips: dict[str, np.ndarray] = {}
        rows: dict[str, np.ndarray] = {}
        for name, values in per_window.items():
            chunks = torch.split(values, counts)
            clips[name] = torch.stack([self.module.pool_windows(name, chunk) for chunk in chunks]).cpu().numpy()
            if windows:
                rows[name] = torch.cat([self.module.window_rows(name, chunk) for chunk in chunks]).cpu().numpy()
        clips[SPECTRUM] = np.stack([_spectrum(m).cpu().numpy() for m in log_mels]) if log_mels \
            else np.empty((0, 2 * self.log_mel.n_mels), dtype=np.float32)
        if windows:
            rows[SPECTRUM] = np.concatenate([_spectrum(self._windows(m)).cpu().numpy() for m in log_mels]) \
                if log_mels else np.empty((0, 2 * self.log_mel.n_mels), dtype=np.float32)
        return ModelOutputs(clips, rows if windows else None, counts)

    def outputs_from_log_mels(self, log_mels: Sequence[Tensor], batch_size: int = 64) -> dict[str, np.ndarray]:
        """Clip-level model outputs, `SPECTRUM` among them (`encode`'s per-clip part)."""
        return self.encode(log_mels, batch_size=batch_size).clips

    def window_outputs(self, windows: Tensor) -> dict[str, Tensor]:
        """The network's outputs for a batch of log-mel windows (another backend, e.g. ONNX, replaces this)."""
        return self.fast_module.window_outputs(windows)

    def outputs(self, inputs: ClipInput | Sequence[ClipInput], sample_rate: int | None = None,
                batch_size: int = 64) -> dict[str, np.ndarray]:
        """Clip-level outputs (e.g. "embedding", "neg_log_prob", "anomaly_score") for each input."""
        return self.outputs_from_log_mels(self.log_mels(inputs, sample_rate), batch_size)

    def embed(self, inputs: ClipInput | Sequence[ClipInput], sample_rate: int | None = None,
              batch_size: int = 64) -> np.ndarray:
        """Clip-level embeddings: (dim,) for one path or 1-D waveform, (n, dim) for a list or a 2-D batch."""
        if "embedding" not in self.module.output_names:
            raise SsadError(f"{type(self.module).__name__} gives no embeddings (outputs: {self.module.output_names})")
        embeddings = self.outputs(inputs, sample_rate, batch_size)["embedding"]
        return embeddings[0] if _is_single(inputs) else embeddings
