"""Parts fan and pump share: a drifting shaft, blade- or vane-pass series, and the motor's mains hum."""

from __future__ import annotations

from typing import Any

import numpy as np

from ssad.synthesis.machines.model import Unit
from ssad.synthesis.signals import (
    Clip,
    from_db,
    jitter_peaks,
)

__all__ = [
    "CLIP_HARMONIC_STD_DB",
    "CLIP_LOAD_STD_DB",
    "CLIP_PEAK_SHIFT_STD",
    "CLIP_SPEED_STD",
    "CLIP_TILT_STD",
    "SPEED_DRIFT_STD",
    "SPEED_HEADROOM",
    "MAINS_HZ",
    "blade_series",
    "motor_hum",
    "rotor",
]

CLIP_SPEED_STD = 0.003  # relative: line voltage and load move an induction motor's slip from clip to clip
SPEED_DRIFT_STD = 0.0005  # relative: and within a clip, slowly; real lines stay a couple of Hz wide
SPEED_HEADROOM = 1.03  # partials are kept only if they stay below the limit at this much above nominal speed
CLIP_HARMONIC_STD_DB = 0.7  # each harmonic's level wanders a little with load
CLIP_LOAD_STD_DB = 1.5  # tonal-to-noise balance from clip to clip
CLIP_TILT_STD = 0.3  # dB/octave: the operating point tilts a rotating machine's noise from clip to clip
CLIP_PEAK_SHIFT_STD = 0.05  # relative: and moves its flow-noise hump


MAINS_HZ = 50.0


def motor_hum(c: Clip, level_db: float) -> np.ndarray:
    """An induction motor's magnetostriction hum: exact lines at twice the mains frequency and its harmonics."""
    orders = [k for k in (1, 2, 3, 4) if 2 * k * MAINS_HZ < c.f_max]
    return from_db(level_db) * c.tones(c.cycles(2 * MAINS_HZ), orders, [1.0, 0.5, 0.3, 0.2][: len(orders)])


def rotor(c: Clip, unit: Unit, speed_shift: float) -> tuple[float, np.ndarray, np.ndarray, Any]:
    """A rotating machine's shaft speed for this clip, its drift over the clip, cycle phase, and jittered body."""
    speed = unit["shaft_hz"] * (1.0 + CLIP_SPEED_STD * c.rng.standard_normal() + speed_shift)
    speed_curve = speed * (1.0 + c.wander(SPEED_DRIFT_STD, 1.0))
    return speed, speed_curve, c.cycles(speed_curve), jitter_peaks(c, unit["body"], 0.01)


def blade_series(
    c: Clip, unit_db: np.ndarray, count: int, harmonics: int, speed: float, shift_db: float
) -> tuple[list[int], np.ndarray]:
    """Blade- or vane-pass orders (count x k) that stay below the band limit, and their levels for this clip."""
    orders = [count * k for k in range(1, harmonics + 1) if count * k * speed * SPEED_HEADROOM < c.f_max]
    levels = unit_db[: len(orders)] + shift_db + c.rng.normal(0.0, CLIP_HARMONIC_STD_DB, len(orders))
    return orders, levels
