"""ResNet backbone (basic blocks) for log-mel "images": the plain-convolution alternative to MobileNetV2."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .mobilenet import TimeFrequencyPool

__all__ = ["RESNET_CHANNELS", "RESNET_BLOCKS", "BasicBlock", "ResNetBackbone"]

#: ResNet-18 layout (He et al. 2016): four stages of two basic blocks; channels halved from (64 .. 512)
#: for CPU training (ssad choice), which divides the parameter count by about four.
RESNET_CHANNELS: tuple[int, ...] = (32, 64, 128, 256)
RESNET_BLOCKS: tuple[int, ...] = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, He et al. 2016."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            msg = f"stride must be one of (1, 2), got {stride}"
            raise ValueError(msg)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, ceil(H / stride), ceil(W / stride))."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetBackbone(nn.Module):
    """ResNet (He et al. 2016) over a (B, in_channels, n_mels, frames) log-mel, pooled to (B, out_channels).

    Stem: 3x3 conv stride 2 and 3x3 max-pool stride 2 (the ResNet stem's total stride 4, with a smaller
    kernel for small spectrograms), then stages whose first block has stride 1 for the first stage and 2
    after. All downsampling pads, so sizes become ceil(size / 2) and never reach zero.

    Args:
        channels: output channels of each stage; the stem has channels[0].
        blocks_per_stage: basic blocks in each stage (same length as `channels`).
        in_channels: input channels (1 for a single log-mel).
        freq_pool: "max" or "mean" over frequency after pooling over time (see `TimeFrequencyPool`).
        time_pool: "mean", "max" or "meanmax" over time (see `TimeFrequencyPool`).
    """

    def __init__(
        self,
        channels: Sequence[int] = RESNET_CHANNELS,
        blocks_per_stage: Sequence[int] = RESNET_BLOCKS,
        in_channels: int = 1,
        freq_pool: str = "max",
        time_pool: str = "mean",
    ) -> None:
        super().__init__()
        channels, blocks_per_stage = list(channels), list(blocks_per_stage)
        if not channels or len(channels) != len(blocks_per_stage):
            msg = (
                f"channels and blocks_per_stage must be non-empty and of equal length, "
                f"got {tuple(channels)} and {tuple(blocks_per_stage)}"
            )
            raise ValueError(msg)
        if any(c < 1 for c in channels) or any(b < 1 for b in blocks_per_stage):
            msg = f"channels and blocks_per_stage must be >= 1, got {tuple(channels)} and {tuple(blocks_per_stage)}"
            raise ValueError(msg)
        if in_channels < 1:
            msg = f"in_channels must be >= 1, got {in_channels}"
            raise ValueError(msg)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        previous = channels[0]
        for index, (width, blocks) in enumerate(zip(channels, blocks_per_stage, strict=True)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(previous, width, stride)] + [
                BasicBlock(width, width) for _ in range(blocks - 1)
            ]
            stages.append(nn.Sequential(*stage))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.pool = TimeFrequencyPool(freq_pool, time_pool)
        self.out_channels = previous
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming (fan-out, ReLU) convs and unit BatchNorms, as the reference ResNet."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, in_channels, n_mels, frames) -> (B, out_channels, freq', time') before pooling."""
        return self.stages(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, n_mels, frames) -> (B, out_channels)."""
        return self.pool(self.feature_map(x))
