"""Machine-ID classifier network: log-mel window -> backbone -> embedding -> class logits (DCASE 2020 Task 2 winner)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssad.models.components.heads import (
    ARCFACE_MARGIN,
    ARCFACE_SCALE,
    AdaCosHead,
    AdaProjHead,
    ArcFaceHead,
    SoftmaxHead,
)
from ssad.models.components.mobilenet import MobileNetV2Backbone, make_divisible
from ssad.models.components.resnet import RESNET_BLOCKS, RESNET_CHANNELS, ResNetBackbone
from ssad.models.components.stats_branch import SpectralStatsBranch

__all__ = ["BACKBONES", "HEADS", "MachineIDEnsemble", "MachineIDNet"]

#: Accepted values of `MachineIDNet(backbone=...)` and `MachineIDNet(head=...)`.
BACKBONES = ("mobilenetv2", "resnet", "none")
HEADS = ("softmax", "arcface", "adacos", "adaproj")


class MachineIDNet(nn.Module):
    """Classifies which machine (ID) a log-mel window came from; its embedding feeds the anomaly scores.

    Input normalisation is a BatchNorm1d over the mel axis: a per-band standardisation learnt from the
    training data (like the usual dataset z-scoring), which in eval mode uses running statistics, so a clip
    alone and in a batch give the same output; unlike instance norm it keeps each clip's absolute level and
    spectral tilt, which tell machines (and anomalies) apart.

    Args:
        num_classes: number of machine IDs (classes).
        backbone: one of `BACKBONES`; "none" leaves only the stats branch (which it then turns on).
        embedding_dim: size of the embedding (Linear -> BatchNorm1d [-> ReLU]) the head sees.
        head: one of `HEADS`.
        width_mult: scales the backbone's channel counts (both backbones; rounded to multiples of 8).
        n_mels: mel bands of the input.
        mobilenet_settings: MobileNetV2 (expansion, channels, repeats, stride) stages; None = the paper's.
        last_channels: MobileNetV2 final 1x1 conv channels; None skips it.
        resnet_channels: ResNet stage channels (before `width_mult`).
        resnet_blocks: ResNet basic blocks per stage.
        freq_pool: "max" or "mean" over frequency in the backbone's pooling.
        time_pool: "mean", "max" or "meanmax" (both, concatenated) over time in the backbone's pooling: the
            mean summarises what is steady, the max keeps a click or a burst that the mean dilutes.
        dropout: dropout on the pooled backbone vector, before the embedding layer.
        embedding_relu: end the embedding layer with a ReLU.
        arcface_scale: ArcFace s.
        arcface_margin: ArcFace m in radians.
        arcface_easy_margin: ArcFace margin only where cos(theta) > 0.
        n_subclusters: centres per class of the "adacos" head (1 = AdaCos, more = sub-cluster AdaCos).
        subspace_dim: vectors spanning each class's subspace in the "adaproj" head.
        stats_branch: add a second branch on the window's per-band log-mel mean and standard deviation
            (its long-term spectrum, where stationary tones live), concatenated with the CNN's pooled output.
        cnn_frames: in training, the CNN branch sees a random crop of this many frames of each input while the
            stats branch sees all of it (whole-clip statistics at the cost of a short crop); None = all frames.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "mobilenetv2",
        embedding_dim: int = 128,
        head: str = "softmax",
        width_mult: float = 1.0,
        n_mels: int = 128,
        mobilenet_settings: Sequence[tuple[int, int, int, int]] | None = None,
        last_channels: int | None = 1280,
        resnet_channels: Sequence[int] = RESNET_CHANNELS,
        resnet_blocks: Sequence[int] = RESNET_BLOCKS,
        freq_pool: str = "max",
        time_pool: str = "mean",
        dropout: float = 0.0,
        embedding_relu: bool = False,
        arcface_scale: float = ARCFACE_SCALE,
        arcface_margin: float = ARCFACE_MARGIN,
        arcface_easy_margin: bool = False,
        n_subclusters: int = 1,
        stats_branch: bool = False,
        subspace_dim: int = 16,
        cnn_frames: int | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            msg = f"backbone must be one of {BACKBONES}, got {backbone!r}"
            raise ValueError(msg)
        if head not in HEADS:
            msg = f"head must be one of {HEADS}, got {head!r}"
            raise ValueError(msg)
        if num_classes < 1 or embedding_dim < 1 or n_mels < 1:
            msg = f"num_classes, embedding_dim and n_mels must be >= 1, got {num_classes}, {embedding_dim}, {n_mels}"
            raise ValueError(msg)
        if width_mult <= 0:
            msg = f"width_mult must be > 0, got {width_mult}"
            raise ValueError(msg)
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1), got {dropout}"
            raise ValueError(msg)
        if cnn_frames is not None and cnn_frames < 8:
            msg = f"cnn_frames must be >= 8 (or None), got {cnn_frames}"
            raise ValueError(msg)
        self.cnn_frames = cnn_frames
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.n_mels = n_mels
        self.backbone_name = backbone
        self.head_name = head

        self.input_norm = nn.BatchNorm1d(n_mels)
        self.backbone: MobileNetV2Backbone | ResNetBackbone | None
        stats_branch = stats_branch or backbone == "none"
        if backbone == "none":
            self.backbone = None
        elif backbone == "mobilenetv2":
            self.backbone = MobileNetV2Backbone(
                width_mult=width_mult,
                settings=mobilenet_settings,
                last_channels=last_channels,
                freq_pool=freq_pool,
                time_pool=time_pool,
            )
        else:
            channels = (
                [make_divisible(c * width_mult) for c in resnet_channels]
                if width_mult != 1.0
                else resnet_channels
            )
            self.backbone = ResNetBackbone(
                channels=channels, blocks_per_stage=resnet_blocks, freq_pool=freq_pool, time_pool=time_pool
            )
        self.stats_branch = SpectralStatsBranch(n_mels) if stats_branch else None
        pooled = self._pooled_size(n_mels) + (self.stats_branch.out_features if self.stats_branch else 0)
        layers: list[nn.Module] = [
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(pooled, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        ]
        if embedding_relu:
            layers.append(nn.ReLU(inplace=True))
        self.embedding = nn.Sequential(*layers)
        self.head: SoftmaxHead | ArcFaceHead | AdaCosHead
        if head == "adaproj":
            self.head = AdaProjHead(embedding_dim, num_classes, subspace_dim=subspace_dim)
        elif head == "softmax":
            self.head = SoftmaxHead(embedding_dim, num_classes)
        elif head == "adacos":
            self.head = AdaCosHead(embedding_dim, num_classes, n_subclusters=n_subclusters)
        else:
            self.head = ArcFaceHead(
                embedding_dim,
                num_classes,
                scale=arcface_scale,
                margin=arcface_margin,
                easy_margin=arcface_easy_margin,
            )

    @torch.no_grad()
    def _pooled_size(self, n_mels: int) -> int:
        """Size of the backbone's pooled output for `n_mels` bands (it depends on them when pooling flattens)."""
        if self.backbone is None:
            return 0
        self.backbone.eval()
        size = self.backbone(torch.zeros(1, 1, n_mels, 8)).shape[1]
        self.backbone.train()
        return int(size)

    def _check_input(self, x: Tensor) -> None:
        """Input must be (B, n_mels, frames)."""
        if x.dim() != 3 or x.shape[1] != self.n_mels:
            msg = f"input must have shape (batch, {self.n_mels}, frames), got {tuple(x.shape)}"
            raise ValueError(msg)

    def _cnn_input(self, x: Tensor) -> Tensor:
        """The CNN branch's input: in training with `cnn_frames`, a random crop of that many frames per example."""
        frames = x.shape[-1]
        if not self.training or self.cnn_frames is None or frames <= self.cnn_frames:
            return x
        starts = torch.randint(0, frames - self.cnn_frames + 1, (x.shape[0], 1, 1), device=x.device)
        index = (starts + torch.arange(self.cnn_frames, device=x.device)).expand(-1, x.shape[1], -1)
        return x.gather(-1, index)

    def embed(self, x: Tensor) -> Tensor:
        """(B, n_mels, frames) log-mel -> (B, embedding_dim) embedding (before the head)."""
        self._check_input(x)
        normalised = self.input_norm(x)
        parts = [] if self.backbone is None else [self.backbone(self._cnn_input(normalised).unsqueeze(1))]
        if self.stats_branch is not None:
            parts.append(self.stats_branch(normalised))
        features = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.embedding(features)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, n_mels, frames) -> ((B, num_classes) logits, (B, embedding_dim) embedding).

        With `labels` (training) an ArcFace head applies its margin to the target class; without, the logits
        are the inference ones.
        """
        embedding = self.embed(x)
        return self.head(embedding, labels), embedding

    def log_probs(self, x: Tensor) -> Tensor:
        """(B, n_mels, frames) -> (B, num_classes) log-softmax of the inference logits."""
        logits, _ = self.forward(x)
        return F.log_softmax(logits, dim=1)


class MachineIDEnsemble(nn.Module):
    """Several `MachineIDNet`s trained side by side from their own initialisations; their embeddings concatenated.

    Networks that start apart learn the ID task alike but keep different leftovers of the within-ID variation
    that a fault may move, and which ones a single network keeps is luck of its seed (a deep ensemble,
    Lakshminarayanan et al. 2017). Inference logits are the members' mean; `MachineIDClassifier` trains each
    member on its own loss, so that they stay independent.

    Args:
        n_members: how many networks (>= 2 to be worth it; 1 works).
        **net_args: `MachineIDNet`'s arguments, the same for every member.
    """

    def __init__(self, n_members: int, **net_args: object) -> None:
        super().__init__()
        if n_members < 1:
            msg = f"n_members must be >= 1, got {n_members}"
            raise ValueError(msg)
        self.members = nn.ModuleList(MachineIDNet(**net_args) for _ in range(n_members))  # type: ignore[arg-type]
        first = self.members[0]
        self.num_classes, self.n_mels = first.num_classes, first.n_mels
        self.embedding_dim = n_members * first.embedding_dim

    def embed(self, x: Tensor) -> Tensor:
        """(B, n_mels, frames) -> (B, n_members * member embedding_dim): the members' embeddings side by side."""
        return torch.cat([member.embed(x) for member in self.members], dim=1)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, n_mels, frames) -> ((B, num_classes) mean logits, (B, embedding_dim) concatenated embedding)."""
        outputs = [member(x, labels) for member in self.members]
        return torch.stack([o[0] for o in outputs]).mean(0), torch.cat([o[1] for o in outputs], dim=1)

    def log_probs(self, x: Tensor) -> Tensor:
        """(B, n_mels, frames) -> (B, num_classes) log-softmax of the mean inference logits."""
        logits, _ = self.forward(x)
        return F.log_softmax(logits, dim=1)
