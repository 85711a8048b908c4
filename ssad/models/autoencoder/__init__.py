"""The DCASE 2020 Task 2 baseline autoencoder (Koizumi et al., y-kawagu/dcase2020_task2_baseline)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BaselineAutoencoder", "BaselineAutoencoderModule"]

_WHERE = {
    "BaselineAutoencoder": "ssad.models.autoencoder.torch_model",
    "BaselineAutoencoderModule": "ssad.models.autoencoder.lightning_model",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the plain network imports without Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.models.autoencoder' has no attribute {name!r}")
