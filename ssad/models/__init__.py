"""Models: the machine-ID classifier, Group MADE, the DCASE 2020 baseline autoencoder and the spectral statistics."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MachineIDClassifier", "GroupMADEModule", "BaselineAutoencoderModule", "SpectralStatsModule"]

_WHERE = {
    "MachineIDClassifier": "ssad.models.classifier.lightning_model",
    "GroupMADEModule": "ssad.models.made.lightning_model",
    "BaselineAutoencoderModule": "ssad.models.autoencoder.lightning_model",
    "SpectralStatsModule": "ssad.models.spectral.lightning_model",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the plain networks import without Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.models' has no attribute {name!r}")
