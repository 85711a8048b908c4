"""Synthetic sound: whole machine-sound corpora (the synthesized machine instances of training are in `ssad.data`).

A corpus is written by `corpus.generate` from a `config.SynthConfig`; each clip (`clips`) is one unit of
a machine model (`machines/`, one module per type over the primitives in `signals`) mixed with a
factory `background`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PRESETS", "SynthConfig", "SynthSummary", "generate", "synthesize_clip",
]

_HOMES = {
    "PRESETS": "config", "SynthConfig": "config", "SynthSummary": "corpus", "generate": "corpus",
    "synthesize_clip": "clips",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that `ssad --help` does not import the generator.
    if name in _HOMES:
        return getattr(importlib.import_module(f"ssad.synthesis.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'ssad.synthesis' has no attribute {name!r}")
