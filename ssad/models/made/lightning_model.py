"""Group MADE for Lightning: fit the window density on normal clips; a window's anomaly score is its mean NLL per dimension."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from ssad.models.base import SsadModule
from ssad.models.made.torch_model import GroupMADE

__all__ = ["GroupMADEModule", "STD_FLOOR"]

#: Smallest per-band standard deviation (dB) used to normalise inputs, so a constant band does not blow up.
STD_FLOOR = 1e-3


class GroupMADEModule(SsadModule):
    """Trains a `GroupMADE` on log-mel windows normalised per band with the training set's mean and std.

    The normalisation statistics are copied from the data module (`frame_mean`, `frame_std`) when
    fitting starts and kept as buffers, so a checkpoint holds everything inference needs.

    Args:
        n_mels: mel bands of each frame (must match the data's features).
        context_frames: frames of one window (the data module's `window_frames` must equal it).
        group: "frame" (a group is one frame) or "bands" (a block of adjacent bands within a frame).
        band_group_size: bands per group when `group="bands"`.
        hidden_sizes: widths of the masked hidden layers.
        n_components: Gaussians per dimension.
        num_orderings: group orderings shared by the weights; one is sampled per training batch and
            the score averages over all.
        ordering: the first ordering: "natural", "reverse" or "random".
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        inference_hop: frames between inference windows of a clip (the data module's `window_hop` is
            the training stride).
        ordering_seed: fixes the orderings and the connectivity masks (named apart from the data module's
            `seed`: Lightning refuses equal hyper-parameter names with different values).
    """

    output_names = ("anomaly_score",)
    default_scorers: dict[str, dict] = {"group_made": {"kind": "output", "input_name": "anomaly_score"}}

    def __init__(
        self,
        n_mels: int = 128,
        context_frames: int = 5,
        group: str = "frame",
        band_group_size: int = 16,
        hidden_sizes: Sequence[int] = (512, 512),
        n_components: int = 1,
        num_orderings: int = 1,
        ordering: str = "natural",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        inference_hop: int = 1,
        ordering_seed: int = 0,
    ) -> None:
        super().__init__()
        if lr <= 0 or weight_decay < 0:
            msg = f"lr must be > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}"
            raise ValueError(msg)
        if inference_hop < 1:
            msg = f"inference_hop={inference_hop} must be >= 1"
            raise ValueError(msg)
        self.save_hyperparameters()
        self.model = GroupMADE(
            n_mels=n_mels,
            context_frames=context_frames,
            group=group,
            band_group_size=band_group_size,
            hidden_sizes=hidden_sizes,
            n_components=n_components,
            ordering=ordering,
            num_orderings=num_orderings,
            seed=ordering_seed,
        )
        self.window_frames = context_frames
        self.window_hop = inference_hop
        self.register_buffer("frame_mean", torch.zeros(n_mels))
        self.register_buffer("frame_std", torch.ones(n_mels))
        self.register_buffer("normaliser_fitted", torch.tensor(False))

    def setup(self, stage: str) -> None:
        """Check the data fits the model and take the training set's per-band statistics (first fit only)."""
        datamodule = self.check_datamodule(self.hparams.n_mels, frames_param="context_frames")
        if datamodule is None or stage != "fit" or bool(self.normaliser_fitted):
            return
        mean, std = getattr(datamodule, "frame_mean", None), getattr(datamodule, "frame_std", None)
        if mean is None or std is None:
            rank_zero_warn(
                "the data module gives no frame_mean/frame_std: Group MADE trains on unnormalised log-mel"
            )
            return
        self.set_normaliser(mean, std)

    def set_normaliser(self, mean: Tensor, std: Tensor) -> None:
        """Use this per-band mean and std (n_mels,) to normalise inputs from now on."""
        self.frame_mean.copy_(torch.as_tensor(mean, dtype=self.frame_mean.dtype))
        self.frame_std.copy_(torch.as_tensor(std, dtype=self.frame_std.dtype).clamp_min(STD_FLOOR))
        self.normaliser_fitted.fill_(True)

    def normalise(self, log_mel_windows: Tensor) -> Tensor:
        """(batch, n_mels, frames) log-mel -> zero mean, unit variance per band (training-set statistics)."""
        return (log_mel_windows - self.frame_mean[:, None]) / self.frame_std[:, None]

    def window_outputs(self, log_mel_windows: Tensor) -> dict[str, Tensor]:
        """(batch, n_mels, context_frames) -> {"anomaly_score": (batch,) mean NLL per dimension, averaged over orderings}."""
        nll = self.model.nll_per_dim(self.normalise(log_mel_windows))
        return {"anomaly_score": nll.mean(dim=-1)}

    @staticmethod
    def _windows(batch: Any) -> Tensor:
        """The window tensor of a batch, whether it came bare or as a one-element tuple."""
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        windows = self._windows(batch)
        # Order-agnostic training (Germain et al. 2015): one of the connectivities per batch.
        ordering = int(torch.randint(self.model.num_orderings, ())) if self.model.num_orderings > 1 else 0
        loss = self.model.nll_per_dim(self.normalise(windows), ordering).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=windows.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        windows = self._windows(batch)
        loss = self.window_outputs(windows)["anomaly_score"].mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=windows.shape[0], sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
