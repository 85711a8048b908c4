"""Synthetic sound: whole machine-sound corpora, and synthesized machine instances (`instances`).

A corpus is written by `corpus.generate` from a `config.SynthConfig`; each clip (`clips`) is one unit of
a machine model (`machines/`, one module per type over the primitives in `signals`) mixed with a
factory `background`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PRESETS", "SynthConfig", "SynthSummary", "generate", "synthesize_clip",
    "SyntheticClass", "mix_waveforms", "plan_synthetic_classes", "warp_frequency",
]

_HOMES = {
    "PRESETS": "config", "SynthConfig": "config", "SynthSummary": "corpus", "generate": "corpus",
    "synthesize_clip": "clips", "SyntheticClass": "instances", "mix_waveforms": "instances",
    "plan_synthetic_classes": "instances", "warp_frequency": "instances",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the data module's instance synthesis does not import the corpus generator.
    if name in _HOMES:
        return getattr(importlib.import_module(f"ssad.synthesis.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'ssad.synthesis' has no attribute {name!r}")
