"""Group MADE: a masked autoencoder density over log-mel windows, autoregressive over groups of bands (Germain et al. 2015)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GroupMADE", "GroupMADEModule"]

_WHERE = {"GroupMADE": "ssad.models.made.torch_model", "GroupMADEModule": "ssad.models.made.lightning_model"}


def __getattr__(name: str) -> Any:
    # Lazy, so that the plain network imports without Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.models.made' has no attribute {name!r}")
