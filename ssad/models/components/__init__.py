"""Network building blocks shared by ssad models: log-mel backbones and classification heads."""

from .heads import AdaCosHead, AdaProjHead, ArcFaceHead, SoftmaxHead
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
    "AdaProjHead",
    "ArcFaceHead",
    "BasicBlock",
    "InvertedResidual",
    "MobileNetV2Backbone",
    "ResNetBackbone",
    "SoftmaxHead",
    "TimeFrequencyPool",
]
