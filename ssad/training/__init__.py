"""Training: Lightning data modules over the clip table, and the synthesized machine instances they add.

`ssad fit` (`ssad.cli.fit`) builds them from YAML; the config class paths `ssad.data.MachineIDDataModule`
and `ssad.data.LogMelWindowDataModule` name the same classes.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MachineIDDataModule", "LogMelWindowDataModule"]

_WHERE = {
    "MachineIDDataModule": "ssad.training.datamodule",
    "LogMelWindowDataModule": "ssad.training.frame_windows",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the augmentation does not pay for Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ssad.training' has no attribute {name!r}")
