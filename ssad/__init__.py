"""ssad: tells whether a machine sounds wrong, from normal recordings only.

`ssad.load(run)` gives a trained model whose `.embed(...)` turns recordings into embeddings;
`ssad.Detector` turns a run into a detector that scores new recordings.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Idle OpenMP threads sleep instead of spinning, so that ssad beside another process shares the cores
# (see ssad/core/runtime.py). Read when torch loads, so it is set here, before any ssad module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Detector", "load", "__version__"]

if TYPE_CHECKING:
    from ssad.detector import Detector
    from ssad.encoder import load


def __getattr__(name: str) -> Any:
    # Lazy: importing torch and Lightning costs seconds, and `ssad --help` needs neither. Threads are set before
    # torch loads, as the `ssad` command sets them (ssad/core/runtime.py).
    if name in ("load", "Detector"):
        from ssad.core.runtime import configure_runtime

        configure_runtime()
    if name == "load":
        from ssad.encoder import load

        return load
    if name == "Detector":
        from ssad.detector import Detector

        return Detector
    raise AttributeError(f"module 'ssad' has no attribute {name!r}")
