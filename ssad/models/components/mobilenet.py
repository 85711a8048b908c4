"""MobileNetV2 backbone for log-mel "images": cheap enough to train machine-ID classifiers on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "MOBILENETV2_SETTINGS",
    "MOBILENETV2_SMALL_SETTINGS",
    "FREQ_POOLS",
    "InvertedResidual",
    "MobileNetV2Backbone",
    "TimeFrequencyPool",
    "make_divisible",
]

#: MobileNetV2 inverted-residual settings (expansion t, output channels c, repeats n, first stride s),
#: Sandler et al. 2018, Table 2. Total stride 32 with the stride-2 stem.
MOBILENETV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: A reduced stack for fast CPU training (ssad choice): same first stages, fewer repeats, no 160/320
#: stages; total stride 16 with the stem, so a 128 x 64 input ends as an 8 x 4 map.
MOBILENETV2_SMALL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 2),
    (6, 96, 1, 1),
)

#: Stem output channels and the rounding divisor of channel counts, Sandler et al. 2018 (reference code).
STEM_CHANNELS = 32
CHANNEL_DIVISOR = 8

#: How a backbone reduces the frequency axis of its last feature map, and its time axis (see `TimeFrequencyPool`).
FREQ_POOLS = ("max", "mean", "flatten")
TIME_POOLS = ("mean", "max", "meanmax")


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round a scaled channel count to a multiple of `divisor`, never below 90 % of it (as MobileNetV2 does)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class TimeFrequencyPool(nn.Module):
    """(B, C, freq, time) -> (B, C): mean (or max, or both) over time, then max (or mean) over frequency, or no pooling over it.

    Machine sounds are close to stationary within a window, so averaging over time is a low-variance
    summary; over frequency, the strongest band-specific response (a tone, a resonance) is what tells
    machines apart, and `max` keeps it rather than diluting it over mostly uninformative bands. Both make
    the features blind to where in frequency a response sits; "flatten" keeps that (machine IDs that
    differ by a few per cent in speed differ mostly in where their tones sit), at the cost of an output
    size that depends on the input's mel count.
    """

    def __init__(self, freq_pool: str = "max", time_pool: str = "mean") -> None:
        super().__init__()
        if freq_pool not in FREQ_POOLS:
            msg = f"freq_pool must be one of {FREQ_POOLS}, got {freq_pool!r}"
            raise ValueError(msg)
        if time_pool not in TIME_POOLS:
            msg = f"time_pool must be one of {TIME_POOLS}, got {time_pool!r}"
            raise ValueError(msg)
        self.freq_pool = freq_pool
        self.time_pool = time_pool

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, freq, time) -> (B, C), or (B, C * freq) for "flatten"; twice that for time_pool "meanmax"."""
        if self.time_pool == "meanmax":  # the mean keeps what is steady, the max a click or a burst
            x = torch.cat([x.mean(dim=3), x.amax(dim=3)], dim=1)
        else:
            x = x.amax(dim=3) if self.time_pool == "max" else x.mean(dim=3)
        if self.freq_pool == "flatten":  # keeps where in frequency a response sits
            return x.flatten(1)
        return x.amax(dim=2) if self.freq_pool == "max" else x.mean(dim=2)


def _conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU6, the MobileNetV2 building unit ("same" padding, so no size collapses to 0)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 bottleneck, residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            msg = f"stride must be one of (1, 2), got {stride}"
            raise ValueError(msg)
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, kernel_size=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, ceil(H / stride), ceil(W / stride))."""
        out = self.block(x)
        return x + out if self.use_residual else out


def _check_settings(settings: Sequence[Sequence[int]]) -> list[tuple[int, int, int, int]]:
    """Validate inverted-residual settings; each is (expansion >= 1, channels >= 1, repeats >= 1, stride in (1, 2))."""
    checked = []
    if len(settings) == 0:
        msg = "settings must hold at least one (expansion, channels, repeats, stride) tuple, got none"
        raise ValueError(msg)
    for setting in settings:
        if len(setting) != 4:
            msg = f"each setting must be (expansion, channels, repeats, stride), got {tuple(setting)}"
            raise ValueError(msg)
        t, c, n, s = (int(v) for v in setting)
        if t < 1 or c < 1 or n < 1 or s not in (1, 2):
            msg = f"setting {tuple(setting)} invalid: expansion, channels, repeats must be >= 1 and stride one of (1, 2)"
            raise ValueError(msg)
        checked.append((t, c, n, s))
    return checked


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) over a (B, in_channels, n_mels, frames) log-mel, pooled to (B, out_channels).

    Every stride-2 layer uses "same" padding, so each spatial size becomes ceil(size / 2) and never reaches
    zero: a 64 x 16 input leaves the default stack (total stride 32) as a 2 x 1 map.

    Args:
        width_mult: scales every channel count (rounded to multiples of 8).
        in_channels: input channels (1 for a single log-mel).
        settings: (expansion, channels, repeats, stride) per stage; default `MOBILENETV2_SETTINGS`.
        last_channels: channels of the final 1x1 conv, scaled by max(1, width_mult) as in the paper;
            None skips that conv (out_channels is then the last stage's channels).
        dropout: dropout on the pooled vector.
        freq_pool: "max" or "mean" over frequency after pooling over time (see `TimeFrequencyPool`).
        time_pool: "mean", "max" or "meanmax" (both, concatenated) over time (see `TimeFrequencyPool`).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        in_channels: int = 1,
        settings: Sequence[tuple[int, int, int, int]] | None = None,
        last_channels: int | None = 1280,
        dropout: float = 0.0,
        freq_pool: str = "max",
        time_pool: str = "mean",
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            msg = f"width_mult must be > 0, got {width_mult}"
            raise ValueError(msg)
        if in_channels < 1:
            msg = f"in_channels must be >= 1, got {in_channels}"
            raise ValueError(msg)
        if last_channels is not None and last_channels < 1:
            msg = f"last_channels must be >= 1 or None, got {last_channels}"
            raise ValueError(msg)
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1), got {dropout}"
            raise ValueError(msg)
        stages = _check_settings(MOBILENETV2_SETTINGS if settings is None else settings)

        channels = make_divisible(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, channels, stride=2)]
        for expansion, stage_channels, repeats, stride in stages:
            out = make_divisible(stage_channels * width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
                channels = out
        if last_channels is not None:
            out = make_divisible(last_channels * max(1.0, width_mult))
            layers.append(_conv_bn_relu6(channels, out, kernel_size=1))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = TimeFrequencyPool(freq_pool, time_pool)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = channels
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming (fan-out) convs and unit BatchNorms, as the reference MobileNetV2."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, in_channels, n_mels, frames) -> (B, out_channels, freq', time') before pooling."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, n_mels, frames) -> (B, out_channels)."""
        return self.dropout(self.pool(self.features(x)))
