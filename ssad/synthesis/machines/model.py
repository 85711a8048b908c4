"""The face every machine type shows the corpus: its fault kinds, how a unit is drawn, how a clip sounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssad.synthesis.signals import Clip

__all__ = ["MachineModel", "Unit"]

#: One unit's physical parameters, by name (speeds, levels, resonances), as a model's `draw_unit` makes them.
Unit = dict[str, Any]


@dataclass(frozen=True)
class MachineModel:
    """One machine type's physical model.

    Attributes:
        name: the type's folder name in the corpus, e.g. ``fan``; also its module's name.
        anomaly_kinds: the faults it can have; an anomalous clip's fault cycles through them by index.
        draw_unit: one unit's parameters from a random stream seeded by (seed, type, id) alone.
        sound: a clip of a unit from the clip's random stream, ``sound(clip, unit, kind, severity)``;
            kind None for a normal clip.
        rms: RMS of the normal output, measured over units and seeds, that the clip is divided by
            (fan and pump normalize themselves; slider and valve keep their event energies absolute,
            so that missing or extra events change the level).
    """

    name: str
    anomaly_kinds: tuple[str, ...]
    draw_unit: Callable[[np.random.Generator], Unit]
    sound: Callable[[Clip, Unit, str | None, float], np.ndarray]
    rms: float = 1.0
