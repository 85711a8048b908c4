"""Spectral statistics as a detector: per-band log-mel mean and std of a clip, standardised with the training frames."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ssad.models.base import SsadModule, mean_and_spread

__all__ = ["SpectralStatsModule"]

#: Floor of a band's standard deviation when standardising (log-mel in dB).
_MIN_STD = 1e-3


class SpectralStatsModule(SsadModule):
    """The plain spectral floor as a first-class detector: a clip's per-band log-mel mean and std.

    Fitting records each band's mean and standard deviation over the training frames (one epoch, no steps);
    a clip's embedding is then the mean and the standard deviation over its frames of the standardised
    log-mel (2 n_mels values). Per-ID scorers on it (a shrunk Gaussian, or the nearest neighbour) are
    what a learned detector must beat, and it joins ensembles like any other detector.

    Args:
        n_mels: mel bands of each frame.
    """

    output_names = ("embedding",)
    default_scorers: dict[str, dict] = {
        "gaussian": {"kind": "gaussian"},
        "knn": {"kind": "knn", "k": 1, "metric": "euclidean"},
    }
    monitor = (None, "min")  # nothing to validate: the one checkpoint is the fitted statistics

    def __init__(self, n_mels: int = 128) -> None:
        super().__init__()
        if n_mels < 1:
            msg = f"n_mels must be >= 1, got {n_mels}"
            raise ValueError(msg)
        self.save_hyperparameters()
        self.window_frames = 1
        self.window_hop = 1
        self.register_buffer("band_mean", torch.zeros(n_mels))
        self.register_buffer("band_std", torch.ones(n_mels))

    def setup(self, stage: str) -> None:
        """Check the data module's windows fit (one frame of n_mels bands)."""
        self.check_datamodule(self.hparams.n_mels, frames_param="window_frames")

    def on_fit_start(self) -> None:
        """Take the per-band mean and std of every training frame from the data module (it computes them)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        mean, std = getattr(datamodule, "frame_mean", None), getattr(datamodule, "frame_std", None)
        if mean is None or std is None:
            msg = "SpectralStatsModule needs a data module that gives frame_mean and frame_std (LogMelWindowDataModule)"
            raise ValueError(msg)
        self.band_mean.copy_(mean.to(self.band_mean))
        self.band_std.copy_(std.to(self.band_std).clamp(min=_MIN_STD))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None  # nothing to learn beyond the statistics taken at the start

    def window_outputs(self, log_mel_windows: Tensor) -> dict[str, Tensor]:
        """(batch, n_mels, frames) -> {"embedding": (batch, n_mels) standardised mean frame of each window}."""
        standardised = (log_mel_windows - self.band_mean[:, None]) / self.band_std[:, None]
        return {"embedding": standardised.mean(-1)}

    def pool_windows(self, name: str, values: Tensor) -> Tensor:
        """One clip's per-frame vectors -> their mean and standard deviation per band."""
        return mean_and_spread(values)

    def configure_optimizers(self) -> None:
        return None
