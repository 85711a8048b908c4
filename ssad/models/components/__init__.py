"""Network building blocks shared by ssad models: log-mel backbones and classification heads."""

from .heads import AdaCosHead, ArcFaceHead, SoftmaxHead
from .mobilenet import (
    MOBILENETV2_SETTINGS,
    MOBILENETV2_SMALL_SETTINGS,
    InvertedResidual,
    MobileNetV2Backbone,
    TimeFrequencyPool,
)
from .resnet import BasicBlock, ResNetBackbone

__all__ = [
    "MOBILENETV2_SETTINGS",
    "MOBILENETV2_SMALL_SETTINGS",
    "AdaCosHead",
    "ArcFaceHead",
    "BasicBlock",
    "InvertedResidual",
    "MobileNetV2Backbone",
    "ResNetBackbone",
    "SoftmaxHead",
    "TimeFrequencyPool",
]
