"""Pump: impeller harmonics, fluid noise, pulsation."""

from __future__ import annotations

import numpy as np

from ssad.synthesis.machines.model import MachineModel, Unit
from ssad.synthesis.machines.rotating import (
    CLIP_LOAD_STD_DB,
    CLIP_PEAK_SHIFT_STD,
    CLIP_TILT_STD,
    SPEED_HEADROOM,
    bearing_defect,
    blade_series,
    rotor,
)
from ssad.synthesis.signals import (
    Clip,
    bursts,
    episodes,
    from_db,
    impulses,
    log_uniform,
    modes_near,
    near,
    peaks_near,
    resonate,
    response_db,
    unit_rms,
)

__all__ = ["ANOMALY_KINDS", "MODEL", "draw_unit", "sound"]

PUMP_SHAFT_HZ = 24.5  # ~1470 rpm, a 4-pole motor
PUMP_VANES = 6
PUMP_ROTOR_SLOTS = 28
PUMP_VANE_HARMONICS = 12
PUMP_HUM_HZ = 100.0  # magnetostriction hum at twice a 50 Hz line frequency
PUMP_VANE_PROFILE_DB = -5.0 * np.log2(np.arange(1, PUMP_VANE_HARMONICS + 1)) + 2.0 * np.sin(
    2.3 * np.arange(1, PUMP_VANE_HARMONICS + 1)
)
PUMP_BODY = ((380.0, 4.0, 0.3), (1100.0, 5.0, 0.3), (2600.0, 4.0, 0.3))


def draw_unit(rng: np.random.Generator) -> Unit:
    """One pump of the model: speed, impeller harmonics, flow and resonances a little from nominal."""
    return {
        "shaft_hz": near(rng, PUMP_SHAFT_HZ, 0.008),
        "vane_db": PUMP_VANE_PROFILE_DB + rng.normal(0.0, 0.8, PUMP_VANE_HARMONICS),
        "shaft_db": -14.0 + rng.normal(0.0, 2.0, 5),
        "slot_db": -17.0 + rng.uniform(-1.5, 1.5),
        "hum_db": -19.0 + rng.uniform(-1.5, 1.5),
        "tonal_db": -3.0 + rng.uniform(-1.0, 1.0),
        "fluid_tilt": -3.0 + rng.uniform(-0.3, 0.3),
        "fluid_peak": (near(rng, 350.0, 0.06), 6.5 + rng.uniform(-1.0, 1.0), 0.75),
        "fluid_high_hz": near(rng, 4500.0, 0.04),
        "vane_am": near(rng, 0.18, 0.2),
        "pulse_hz": near(rng, 0.8, 0.15),
        "pulse_depth": near(rng, 0.14, 0.2),
        "splash_rate": near(rng, 30.0, 0.2),
        "splash_db": -10.0 + rng.uniform(-1.5, 1.5),
        "splash_modes": modes_near(rng, [(2800.0, 0.0005, 1.0), (5200.0, 0.0003, 0.7)], 0.1),
        "body": peaks_near(rng, PUMP_BODY, 0.04, 0.7),
        "gain_db": rng.uniform(-1.0, 1.0),
        "ball_pass_order": near(rng, 3.3, 0.05),
        "bearing_modes": modes_near(rng, [(3800.0, 0.0012, 1.0), (1800.0, 0.002, 0.5)], 0.1),
        "leak_hz": near(rng, 4000.0, 0.15),
    }


ANOMALY_KINDS = ("cavitation", "leak", "clogging", "bearing")
PUMP_SEVERITY = {
    "cavitation_db": -14.0,
    "leak_db": -22.0,
    "bearing_db": -16.0,
    "clog_tone_db": 5.0,
    "clog_tilt": -1.0,
    "clog_surge": 0.6,
    "clog_speed": -0.02,
}


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A pump clip (normal part at unit RMS), with fault `kind` of strength `s` if given."""
    rng = c.rng
    clog = s if kind == "clogging" else 0.0
    speed, speed_curve, cycles, body = rotor(c, unit, PUMP_SEVERITY["clog_speed"] * clog)
    vane_orders, vane_db = blade_series(
        c, unit["vane_db"], PUMP_VANES, PUMP_VANE_HARMONICS, speed, PUMP_SEVERITY["clog_tone_db"] * clog
    )
    slot_orders = [
        o for o in (PUMP_ROTOR_SLOTS, 2 * PUMP_ROTOR_SLOTS) if o * speed * SPEED_HEADROOM < c.f_max
    ]
    orders = [1, 2, 3, 4, 5, *vane_orders, *slot_orders]
    tone_db = np.concatenate([unit["shaft_db"], vane_db, unit["slot_db"] - 6.0 * np.arange(len(slot_orders))])
    tone_db = tone_db + response_db(np.array(orders) * speed, peaks=body)
    tones = unit_rms(c.tones(cycles, orders, from_db(tone_db)))
    hum_orders = [k for k in (1, 2, 3) if k * PUMP_HUM_HZ < c.f_max]
    tones += from_db(unit["hum_db"]) * c.tones(
        c.cycles(PUMP_HUM_HZ), hum_orders, [1.0, 0.5, 0.25][: len(hum_orders)]
    )

    centre, gain, width = unit["fluid_peak"]
    fluid_env = c.envelope(
        tilt_db_per_oct=unit["fluid_tilt"]
        + CLIP_TILT_STD * rng.standard_normal()
        + PUMP_SEVERITY["clog_tilt"] * clog,
        ref_hz=500.0,
        peaks=[(centre * (1.0 + CLIP_PEAK_SHIFT_STD * rng.standard_normal()), gain, width), *body],
        low_hz=30.0,
        high_hz=unit["fluid_high_hz"],
    )
    # pressure pulsation: a slow one from the piping, a fast one as each vane passes the cutwater
    pulse_hz = unit["pulse_hz"] * (1.0 + 0.03 * rng.standard_normal())
    pulsation = 1.0 + unit["pulse_depth"] * c.tones(c.cycles(pulse_hz), [1], [1.0])
    pulsation += unit["vane_am"] * c.tones(cycles, [PUMP_VANES], [1.0])
    if kind == "clogging":
        # a half-blocked inlet makes the flow surge irregularly
        pulsation *= np.clip(1.0 + PUMP_SEVERITY["clog_surge"] * clog * c.wander(1.0, 3.0), 0.15, None)
    fluid = c.noise(fluid_env) * pulsation
    splash_times = rng.uniform(0.0, c.duration, rng.poisson(unit["splash_rate"] * c.duration))
    splash_exc = bursts(
        c, splash_times * c.sr, log_uniform(rng, 0.3, 1.0, len(splash_times)), decay_s=0.004
    )
    splash = unit_rms(resonate(c, splash_exc, unit["splash_modes"]))
    load_db = CLIP_LOAD_STD_DB * rng.standard_normal()
    x = unit_rms(fluid + from_db(unit["tonal_db"] + load_db) * tones + from_db(unit["splash_db"]) * splash)

    mean_speed = float(np.mean(speed_curve))
    if kind == "bearing":
        x += from_db(PUMP_SEVERITY["bearing_db"]) * s * bearing_defect(c, unit, mean_speed)
    elif kind == "cavitation":
        # vapour bubbles collapse in crackling bursts: dense sharp clicks while the inlet pressure is low
        gate = episodes(c, mean_on_s=0.5, mean_off_s=0.8, ramp_s=0.05)
        times = rng.uniform(0.0, c.duration, rng.poisson(rng.uniform(200.0, 600.0) * c.duration))
        exc = impulses(c.n, times * c.sr, log_uniform(rng, 0.1, 1.0, len(times))) * gate
        crackle = unit_rms(c.shape(exc, c.envelope(tilt_db_per_oct=1.0, low_hz=1500.0, high_hz=7500.0)))
        x += from_db(PUMP_SEVERITY["cavitation_db"]) * s * crackle
    elif kind == "leak":
        # a leaking seal hisses in a narrow band; the flow through it follows the pressure pulsation
        band = c.envelope(
            peaks=[(min(unit["leak_hz"] * (1.0 + 0.02 * rng.standard_normal()), c.f_max), 30.0, 0.06)]
        )
        x += from_db(PUMP_SEVERITY["leak_db"]) * s * unit_rms(c.noise(band) * pulsation)
    return x


MODEL = MachineModel("pump", ANOMALY_KINDS, draw_unit, sound)
