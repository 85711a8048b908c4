"""Synthetic sound: whole machine-sound corpora (`machines`) and synthesized machine instances (`instances`)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PRESETS", "SynthConfig", "SynthSummary", "generate", "synthesize_clip",
    "SyntheticClass", "mix_waveforms", "plan_synthetic_classes", "warp_frequency",
]

_INSTANCES = {"SyntheticClass", "mix_waveforms", "plan_synthetic_classes", "warp_frequency"}


def __getattr__(name: str) -> Any:
    # Lazy, so that the data module's instance synthesis does not import the corpus generator.
    if name in __all__:
        module = "ssad.synthesis.instances" if name in _INSTANCES else "ssad.synthesis.machines"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'ssad.synthesis' has no attribute {name!r}")
