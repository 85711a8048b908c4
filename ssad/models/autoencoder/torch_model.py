"""The DCASE 2020 Task 2 baseline autoencoder: a dense network that reconstructs stacked log-mel frames."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "BASELINE_FRAMES",
    "BASELINE_N_MELS",
    "BASELINE_HIDDEN_DIM",
    "BASELINE_BOTTLENECK_DIM",
    "BASELINE_N_HIDDEN",
    "KERAS_BATCH_NORM_EPS",
    "KERAS_BATCH_NORM_MOMENTUM",
    "BaselineAutoencoder",
    "flatten_windows",
]

# The baseline's settings (y-kawagu/dcase2020_task2_baseline, baseline.yaml and keras_model.py).
BASELINE_FRAMES = 5
BASELINE_N_MELS = 128
BASELINE_HIDDEN_DIM = 128
BASELINE_BOTTLENECK_DIM = 8
BASELINE_N_HIDDEN = 4
# Keras defaults the baseline runs with: BatchNormalization(epsilon=1e-3, momentum=0.99), where Keras'
# momentum is the weight of the old running average (PyTorch's momentum = 1 - 0.99).
KERAS_BATCH_NORM_EPS = 1e-3
KERAS_BATCH_NORM_MOMENTUM = 0.01


def flatten_windows(windows: Tensor) -> Tensor:
    """(batch, n_mels, frames) -> (batch, frames * n_mels) frame-major, as the baseline stacks its vectors."""
    return windows.transpose(1, 2).reshape(windows.shape[0], -1)


class BaselineAutoencoder(nn.Module):
    """Dense autoencoder input_dim -> hidden_dim x n_hidden -> bottleneck_dim -> hidden_dim x n_hidden -> input_dim.

    Every layer but the last is Dense -> BatchNorm -> ReLU (the bottleneck too); the output layer is
    linear. Weights start as Keras' Dense defaults (Glorot-uniform, zero bias) so training behaves as
    the baseline's.

    Args:
        input_dim: length of one stacked vector (frames x n_mels; the baseline's 5 x 128 = 640).
        hidden_dim: width of the hidden layers.
        bottleneck_dim: width of the code layer.
        n_hidden: hidden layers on each side of the bottleneck.
    """

    def __init__(
        self,
        input_dim: int = BASELINE_FRAMES * BASELINE_N_MELS,
        hidden_dim: int = BASELINE_HIDDEN_DIM,
        bottleneck_dim: int = BASELINE_BOTTLENECK_DIM,
        n_hidden: int = BASELINE_N_HIDDEN,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("input_dim", input_dim, 1),
            ("hidden_dim", hidden_dim, 1),
            ("bottleneck_dim", bottleneck_dim, 1),
            ("n_hidden", n_hidden, 0),
        ):
            if value < low:
                msg = f"{name}={value} must be >= {low}"
                raise ValueError(msg)
        self.input_dim = input_dim
        widths = [input_dim] + [hidden_dim] * n_hidden + [bottleneck_dim] + [hidden_dim] * n_hidden
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            blocks += [
                nn.Linear(width_in, width_out),
                nn.BatchNorm1d(width_out, eps=KERAS_BATCH_NORM_EPS, momentum=KERAS_BATCH_NORM_MOMENTUM),
                nn.ReLU(),
            ]
        blocks.append(nn.Linear(widths[-1], input_dim))
        self.network = nn.Sequential(*blocks)
        for module in self.network:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, vectors: Tensor) -> Tensor:
        """(batch, input_dim) -> reconstruction (batch, input_dim)."""
        if vectors.dim() != 2 or vectors.shape[1] != self.input_dim:
            msg = f"expected vectors of shape (batch, {self.input_dim}), got {tuple(vectors.shape)}"
            raise ValueError(msg)
        return self.network(vectors)

    def reconstruction_error(self, vectors: Tensor) -> Tensor:
        """(batch, input_dim) -> (batch,) mean squared error of each vector's reconstruction (the baseline's score)."""
        return (self(vectors) - vectors).square().mean(dim=1)
