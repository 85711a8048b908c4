"""A second input branch over a window's long-term spectrum: per-band log-mel mean and std through 1-D convolutions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SpectralStatsBranch"]


class SpectralStatsBranch(nn.Module):
    """(B, n_mels, frames) -> (B, out_features): convolutions over frequency of each band's mean and std over time.

    The CNN branch sees local time-frequency patches; this one sees the whole window's spectrum at full mel
    resolution, where a stationary tone or a shifted resonance shows (after Wilkinghoff's two-branch
    design, ICASSP 2023, which uses the clip's magnitude spectrum; here the log-mel statistics the
    spectral floor detector uses, so that the branch can learn at least what that floor sees).
    """

    def __init__(self, n_mels: int, channels: tuple[int, ...] = (32, 64, 64), out_features: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous, length = 2, n_mels
        for width in channels:
            layers += [nn.Conv1d(previous, width, kernel_size=5, stride=2, padding=2, bias=False),
                       nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            previous, length = width, (length + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(previous * length, out_features),
                                     nn.BatchNorm1d(out_features), nn.ReLU(inplace=True))
        self.out_features = out_features

    def forward(self, log_mel: Tensor) -> Tensor:
        """Per-band mean and std over the frames, stacked as two channels, to a feature vector."""
        stats = torch.stack([log_mel.mean(-1), log_mel.std(-1)], dim=1)
        return self.project(self.convs(stats))
