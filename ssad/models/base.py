"""What every ssad model shares: per-window outputs for scoring, and the metadata a checkpoint needs to be used alone."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from ssad.models.runs import TRAINING_KEY

__all__ = ["SsadModule", "CHECKPOINT_KEY", "mean_and_spread"]

#: Key under which a checkpoint stores what `ssad.load` needs beside the weights and hyper-parameters.
CHECKPOINT_KEY = "ssad"


class SsadModule(L.LightningModule):
    """Base of every ssad LightningModule.

    A subclass sets, from its hyper-parameters, `window_frames` (frames of log-mel one network input
    covers) and `window_hop` (frames between inference windows), names in `output_names` what
    `window_outputs` returns, and must be constructible from its saved hyper-parameters alone.
    Its data module must expose `feature_params` (the `LogMel` parameters it computed features with).
    """

    window_frames: int
    window_hop: int
    #: keys of the dict that `window_outputs` returns, e.g. ("embedding", "neg_log_prob") or ("nll",)
    output_names: tuple[str, ...] = ()
    #: scorers that apply to this model's outputs: name -> `ssad.scoring.make_scorer` arguments
    default_scorers: dict[str, dict] = {}
    #: the validation metric that picks the best checkpoint, and whether higher or lower is better
    monitor: tuple[str, str] = ("val/loss", "min")

    def window_outputs(self, log_mel_windows: Tensor) -> dict[str, Tensor]:
        """(batch, n_mels, window_frames) log-mel -> per-window outputs, each with `batch` rows."""
        raise NotImplementedError

    def pool_windows(self, name: str, values: Tensor) -> Tensor:
        """(n_windows, ...) outputs `name` of one clip's windows -> the clip's output: their mean by default."""
        return values.mean(0)

    def window_rows(self, name: str, values: Tensor) -> Tensor:
        """(n_windows, ...) outputs of one clip -> one row per window shaped like the clip's output, so that a
        window scores like a clip (what tells *when* in a clip the anomaly is): each window pooled alone by default.
        """
        return torch.stack([self.pool_windows(name, values[i : i + 1]) for i in range(len(values))])

    def extra_metadata(self) -> dict[str, Any]:
        """Anything else inference needs (e.g. class names); stored in the checkpoint."""
        return {}

    def check_datamodule(self, n_mels: int, frames_param: str = "frames") -> Any:
        """Raise ValueError if the attached data module's `n_mels` or `window_frames` do not fit the model.

        `n_mels` is the model's mel bands and `frames_param` the name of its hyper-parameter giving
        `window_frames`, for the message. Returns the data module, or None when none is attached.
        """
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_mels = getattr(datamodule, "n_mels", None)
        if data_mels is not None and data_mels != n_mels:
            msg = f"the data has n_mels={data_mels} but the model was built for n_mels={n_mels}"
            raise ValueError(msg)
        window = getattr(datamodule, "window_frames", None)
        if window is not None and window != self.window_frames:
            msg = f"the data gives windows of {window} frames but the model's {frames_param}={self.window_frames}"
            raise ValueError(msg)
        return datamodule

    def on_train_epoch_start(self) -> None:
        # Under DDP Lightning wraps the data module's sampler, whose own set_epoch then is never called:
        # tell the data module directly, so each epoch draws new crops on every rank.
        set_epoch = getattr(getattr(self.trainer, "datamodule", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        features = dict(getattr(datamodule, "feature_params", None) or self.hparams.get("feature_params") or {})
        types = getattr(getattr(datamodule, "hparams", None), "machine_types", None)
        checkpoint[CHECKPOINT_KEY] = {
            "machine_types": [types] if isinstance(types, str) and types != "all" else
            (list(types) if isinstance(types, (list, tuple)) else None),
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "feature_params": features,
            "window_frames": int(self.window_frames),
            "window_hop": int(self.window_hop),
            "window_to_end": True,  # the encoder adds a window ending at a clip's last frame (`sliding_windows`)
            "output_names": list(self.output_names),
            **self.extra_metadata(),
        }
        if self._trainer is not None:  # what the run was to train, so that loading it can tell a stopped one
            checkpoint[TRAINING_KEY] = {"max_epochs": self.trainer.max_epochs, "max_steps": self.trainer.max_steps}


def mean_and_spread(values: Tensor) -> Tensor:
    """(n_windows, dim) -> (2 dim,): the mean over a clip's windows and their standard deviation (0 for one window)."""
    spread = values.std(0, unbiased=False) if len(values) > 1 else torch.zeros_like(values[0])
    return torch.cat([values.mean(0), spread])
