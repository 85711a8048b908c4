"""Generic machine: a unit drawn from a wide random world, for pretraining only (domain randomisation).

Where the four MIMII-like types are fixed designs whose units differ by a few per cent, a generic unit is a
design of its own: a harmonic series of a random shaft rate (or of a blade or vane count times it), perhaps a gear
mesh with shaft-rate sidebands, housing resonances, a shaped noise bed, slow amplitude modulation, perhaps an
impulse train ringing a structure, perhaps mains hum, each at a random balance. A clip of it varies as a recording
does: speed, levels and the noise bed's tilt move a little. A classifier told to name such units learns what makes
two recordings of one machine alike across designs, not the particulars of four models. No fault families: it
never appears in `ssad synth` sets, only in the pretraining corpus.
"""

from __future__ import annotations

import numpy as np

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit
from ssad.synthesis.signals import Clip, from_db, impulses, log_uniform, periodic_times, resonate, unit_rms

__all__ = ["MODEL", "draw_unit", "sound"]

CLIP_SPEED_STD = 0.005  # relative speed change from clip to clip
CLIP_LEVEL_STD_DB = 1.5  # each component's level from clip to clip
CLIP_TILT_STD = 0.4  # dB/octave of the noise bed from clip to clip
MAINS_HZ = 50.0


def draw_unit(rng: np.random.Generator) -> Unit:
    """One generic machine: its design and its balance of parts, drawn over a wide range."""
    harmonics = int(rng.integers(4, 40))
    mesh = rng.random() < 0.5
    return {
        "shaft_hz": float(log_uniform(rng, 6.0, 150.0)),
        "count": int(rng.integers(1, 13)) if rng.random() < 0.6 else 1,
        "series_db": rng.uniform(-12.0, -2.0) * np.log2(np.arange(1, harmonics + 1)) + rng.normal(0.0, 4.0, harmonics),
        "tonal_db": float(rng.uniform(-18.0, 6.0)),
        "mesh_teeth": int(rng.integers(9, 61)) if mesh else 0,
        "mesh_db": float(rng.uniform(-20.0, 0.0)),
        "mesh_harmonics": int(rng.integers(1, 5)),
        "sideband_db": float(rng.uniform(-25.0, -6.0)),
        "body": [(float(log_uniform(rng, 150.0, 6500.0)), float(rng.uniform(3.0, 15.0)), float(rng.uniform(0.1, 0.6)))
                 for _ in range(int(rng.integers(1, 6)))],
        "noise_tilt": float(rng.uniform(-7.0, 0.0)),
        "noise_peak": (float(log_uniform(rng, 150.0, 5000.0)), float(rng.uniform(0.0, 10.0)), float(rng.uniform(0.3, 1.5))),
        "am_hz": float(log_uniform(rng, 0.3, 25.0)),
        "am_depth": float(rng.uniform(0.0, 0.5)),
        "hits_hz": float(log_uniform(rng, 0.5, 30.0)) if rng.random() < 0.5 else 0.0,
        "hits_db": float(rng.uniform(-15.0, 5.0)),
        "hits_jitter": float(rng.uniform(0.0, 0.2)),
        "hit_modes": [(float(log_uniform(rng, 300.0, 7000.0)), float(log_uniform(rng, 0.002, 0.04)), 1.0)
                      for _ in range(int(rng.integers(1, 4)))],
        "hum_db": float(rng.uniform(-30.0, -10.0)) if rng.random() < 0.5 else None,
        "gain_db": float(rng.uniform(-1.0, 1.0)),
    }


def _level(c: Clip, db: float) -> float:
    return from_db(db + CLIP_LEVEL_STD_DB * c.rng.standard_normal())


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> tuple[np.ndarray, Evidence | None]:
    """A clip of a generic unit at unit RMS (no faults: `kind` must be None)."""
    if kind is not None:
        raise ValueError("the generic machine has no fault families")
    speed = unit["shaft_hz"] * (1.0 + CLIP_SPEED_STD * c.rng.standard_normal())
    phase = c.cycles(speed * (1.0 + c.wander(0.001, 1.0)))
    body = c.envelope(peaks=unit["body"])
    parts = []
    orders = [unit["count"] * (k + 1) for k in range(len(unit["series_db"]))
              if unit["count"] * (k + 1) * speed < c.f_max]
    if orders:
        levels = unit["series_db"][: len(orders)] + CLIP_LEVEL_STD_DB * c.rng.standard_normal(len(orders))
        parts.append(_level(c, unit["tonal_db"]) * unit_rms(c.tones(phase, orders, from_db(levels))))
    if unit["mesh_teeth"]:
        mesh = [unit["mesh_teeth"] * h + side for h in range(1, unit["mesh_harmonics"] + 1) for side in (-1, 0, 1)
                if (unit["mesh_teeth"] * h + 1) * speed < c.f_max]
        if mesh:
            amps = [1.0 if (m % unit["mesh_teeth"]) == 0 else from_db(unit["sideband_db"]) for m in mesh]
            parts.append(_level(c, unit["mesh_db"]) * unit_rms(c.tones(phase, mesh, amps)))
    tilt = unit["noise_tilt"] + CLIP_TILT_STD * c.rng.standard_normal()
    parts.append(c.noise(c.envelope(tilt_db_per_oct=tilt, peaks=[unit["noise_peak"]], low_hz=20.0)))
    if unit["hits_hz"]:
        times = periodic_times(c, unit["hits_hz"], unit["hits_jitter"])
        excitation = impulses(c.n, times * c.sr, np.ones(len(times)))
        parts.append(_level(c, unit["hits_db"]) * unit_rms(resonate(c, excitation, unit["hit_modes"])))
    if unit["hum_db"] is not None:
        parts.append(_level(c, unit["hum_db"]) * unit_rms(c.tones(c.cycles(2 * MAINS_HZ), [1, 2, 3], [1.0, 0.5, 0.3])))
    mix = np.sum(parts, axis=0)
    if unit["am_depth"] > 0:
        mix = mix * (1.0 + unit["am_depth"] * np.sin(2 * np.pi * c.cycles(unit["am_hz"])))
    return unit_rms(c.shape(mix, body)), None


MODEL = MachineModel(name="generic", anomaly_kinds=(), draw_unit=draw_unit, sound=sound)
