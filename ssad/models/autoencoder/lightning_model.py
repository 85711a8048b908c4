"""The DCASE 2020 baseline autoencoder for Lightning: learn to reconstruct normal windows; the error is the anomaly score."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ssad.models.autoencoder.torch_model import (
    BASELINE_BOTTLENECK_DIM,
    BASELINE_FRAMES,
    BASELINE_HIDDEN_DIM,
    BASELINE_N_HIDDEN,
    BASELINE_N_MELS,
    BaselineAutoencoder,
    flatten_windows,
)
from ssad.models.base import SsadModule

__all__ = ["BaselineAutoencoderModule", "BASELINE_LR", "KERAS_ADAM_EPSILON"]

#: The baseline's learning rate (Keras' Adam default, which the baseline keeps).
BASELINE_LR = 1e-3
#: Keras' Adam epsilon (PyTorch's default is 1e-8).
KERAS_ADAM_EPSILON = 1e-7


class BaselineAutoencoderModule(SsadModule):
    """Trains `BaselineAutoencoder` on raw (unnormalised) log-mel windows with MSE, as the DCASE 2020 baseline does.

    A window (batch, n_mels, frames) is flattened frame-major into the baseline's stacked vector; the
    anomaly score of a window is its mean squared reconstruction error, and of a clip the mean over
    its windows (stride 1). Call `window_outputs` in eval mode, so BatchNorm uses its running statistics.

    Args:
        n_mels: mel bands of each frame.
        frames: frames stacked into one vector.
        hidden_dim: width of the hidden layers.
        bottleneck_dim: width of the code layer.
        n_hidden: hidden layers on each side of the bottleneck.
        lr: Adam learning rate.
    """

    output_names = ("anomaly_score",)
    default_scorers: dict[str, dict] = {"baseline_ae": {"kind": "output", "input_name": "anomaly_score"}}

    def __init__(
        self,
        n_mels: int = BASELINE_N_MELS,
        frames: int = BASELINE_FRAMES,
        hidden_dim: int = BASELINE_HIDDEN_DIM,
        bottleneck_dim: int = BASELINE_BOTTLENECK_DIM,
        n_hidden: int = BASELINE_N_HIDDEN,
        lr: float = BASELINE_LR,
    ) -> None:
        super().__init__()
        if n_mels < 1 or frames < 1:
            msg = f"n_mels and frames must be >= 1, got n_mels={n_mels}, frames={frames}"
            raise ValueError(msg)
        if lr <= 0:
            msg = f"lr={lr} must be > 0"
            raise ValueError(msg)
        self.save_hyperparameters()
        self.model = BaselineAutoencoder(n_mels * frames, hidden_dim, bottleneck_dim, n_hidden)
        self.window_frames = frames
        # The baseline scores every vector of a clip: consecutive frames with stride 1.
        self.window_hop = 1

    def setup(self, stage: str) -> None:
        """Check the data module's windows fit the network."""
        self.check_datamodule(self.hparams.n_mels)

    def _vectors(self, batch: Any) -> Tensor:
        """The batch's windows as the baseline's stacked vectors (batch, frames * n_mels)."""
        windows = batch[0] if isinstance(batch, (list, tuple)) else batch
        expected = (self.hparams.n_mels, self.window_frames)
        if windows.dim() != 3 or tuple(windows.shape[1:]) != expected:
            msg = (
                f"expected windows of shape (batch, {expected[0]}, {expected[1]}), got {tuple(windows.shape)}"
            )
            raise ValueError(msg)
        return flatten_windows(windows)

    def window_outputs(self, log_mel_windows: Tensor) -> dict[str, Tensor]:
        """(batch, n_mels, frames) -> {"anomaly_score": (batch,) mean squared reconstruction error}."""
        return {"anomaly_score": self.model.reconstruction_error(self._vectors(log_mel_windows))}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        vectors = self._vectors(batch)
        loss = F.mse_loss(self.model(vectors), vectors)
        self.log("train/loss", loss, prog_bar=True, batch_size=vectors.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        vectors = self._vectors(batch)
        loss = F.mse_loss(self.model(vectors), vectors)
        self.log("val/loss", loss, prog_bar=True, batch_size=vectors.shape[0], sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, eps=KERAS_ADAM_EPSILON)
