"""Data: files -> clip table (layout), audio reading, checks, downloads.

`MachineIDDataModule`, `SynthCorpusDataModule` and `LogMelWindowDataModule` live in `ssad.training`; they are named here too because
run configs name them `ssad.data.*` (their `class_path`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Clip", "index_root", "read_clip", "MachineIDDataModule", "SynthCorpusDataModule", "LogMelWindowDataModule"]

_WHERE = {
    "Clip": "ssad.data.clips",
    "index_root": "ssad.data.layout",
    "read_clip": "ssad.data.audio",
    "MachineIDDataModule": "ssad.training.datamodule",
    "SynthCorpusDataModule": "ssad.training.synth_corpus",
    "LogMelWindowDataModule": "ssad.training.frame_windows",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that `ssad data check` does not pay for importing Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.data' has no attribute {name!r}")
