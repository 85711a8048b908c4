"""The face every machine type shows the corpus: its fault families, how a unit is drawn, how a clip sounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssad.synthesis.signals import Clip

__all__ = ["Evidence", "MachineModel", "Unit", "retune"]

#: One unit's physical parameters, by name (speeds, levels, resonances), as a model's `draw_unit` makes them.
Unit = dict[str, Any]


@dataclass(frozen=True)
class Evidence:
    """Where an injected fault's evidence lies: a time span (s) and a frequency range (Hz), for faults.csv."""

    start_s: float
    end_s: float
    low_hz: float
    high_hz: float


@dataclass(frozen=True)
class MachineModel:
    """One machine type's physical model.

    Attributes:
        name: the type's folder name in the corpus, e.g. ``fan``; also its module's name.
        anomaly_kinds: the fault families it can have (MIMII's, Purohit et al. 2019); an anomalous clip's
            family cycles through them by index.
        draw_unit: one unit's parameters from a random stream seeded by (seed, type, id) alone.
        sound: a clip of a unit from the clip's random stream, ``sound(clip, unit, kind, severity)`` ->
            (samples, evidence); kind None (and evidence None) for a normal clip.
        rms: RMS of the normal output, measured over units and seeds, that the clip is divided by, so that
            a type's clips have unit mean power while events and faults keep their own energy.
        rates: unit keys that are rates (Hz) and scale with the machine's operating speed.
        periods: unit keys that are durations (s) and shrink as the speed rises.
    """

    name: str
    anomaly_kinds: tuple[str, ...]
    draw_unit: Callable[[np.random.Generator], Unit]
    sound: Callable[[Clip, Unit, str | None, float], tuple[np.ndarray, Evidence | None]]
    rms: float = 1.0
    rates: tuple[str, ...] = ()
    periods: tuple[str, ...] = ()


def retune(model: MachineModel, unit: Unit, speed: float) -> Unit:
    """The unit run at `speed` times its nominal operating speed (an operating condition of the shift preset)."""
    if speed == 1.0:
        return unit
    out = dict(unit)
    for key in model.rates:
        out[key] = unit[key] * speed
    for key in model.periods:
        out[key] = unit[key] / speed
    return out
