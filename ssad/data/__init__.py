"""Lightning data modules over the clip table, and the synthesized machine instances they add.

Run configs name them `ssad.data.<Class>` (their class_path): `MachineIDDataModule` (`machine_ids`),
`LogMelWindowDataModule` (`frame_windows`), `SynthCorpusDataModule` (`synth_corpus`); `augmentation` makes the
synthesized instances.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MachineIDDataModule", "SynthCorpusDataModule", "LogMelWindowDataModule"]

_WHERE = {
    "MachineIDDataModule": "ssad.data.machine_ids",
    "SynthCorpusDataModule": "ssad.data.synth_corpus",
    "LogMelWindowDataModule": "ssad.data.frame_windows",
}


def __getattr__(name: str) -> Any:
    # Lazy: importing ssad.data for one class should not import every data module (and Lightning) at once.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.data' has no attribute {name!r}")
