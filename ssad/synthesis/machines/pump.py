"""Pump: impeller harmonics, fluid noise, pulsation."""

from __future__ import annotations

import numpy as np

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit
from ssad.synthesis.machines.rotating import (
    CLIP_LOAD_STD_DB,
    CLIP_PEAK_SHIFT_STD,
    CLIP_TILT_STD,
    SPEED_HEADROOM,
    blade_series,
    motor_hum,
    rotor,
)
from ssad.synthesis.signals import (
    Clip,
    bursts,
    episodes,
    from_db,
    log_uniform,
    modes_near,
    near,
    peaks_near,
    resonate,
    response_db,
    spell,
    unit_rms,
)

__all__ = ["ANOMALY_KINDS", "MODEL", "draw_unit", "sound"]

PUMP_SHAFT_HZ = 24.5  # ~1470 rpm, a 4-pole motor
PUMP_VANES = 6
PUMP_ROTOR_SLOTS = 28
PUMP_VANE_HARMONICS = 12
PUMP_VANE_PROFILE_DB = -5.0 * np.log2(np.arange(1, PUMP_VANE_HARMONICS + 1)) + 2.0 * np.sin(
    2.3 * np.arange(1, PUMP_VANE_HARMONICS + 1)
)
PUMP_BODY = ((380.0, 4.0, 0.3), (1100.0, 5.0, 0.3), (2600.0, 4.0, 0.3))


def draw_unit(rng: np.random.Generator) -> Unit:
    """One pump of the model: speed, impeller harmonics, flow and resonances a little from nominal."""
    return {
        "shaft_hz": near(rng, PUMP_SHAFT_HZ, 0.008),
        "vane_db": PUMP_VANE_PROFILE_DB + rng.normal(0.0, 1.5, PUMP_VANE_HARMONICS),
        "shaft_db": -14.0 + rng.normal(0.0, 2.0, 5),
        "slot_db": -17.0 + rng.uniform(-1.5, 1.5),
        "hum_db": -22.0 + rng.uniform(-1.5, 1.5),
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
        "debris_modes": modes_near(rng, [(1900.0, 0.0008, 1.0), (3600.0, 0.0005, 0.8)], 0.1),
        "leak_hz": near(rng, 4000.0, 0.15),
    }


ANOMALY_KINDS = ("leakage", "contamination", "clogging")  # MIMII's pump faults
PUMP_SEVERITY = {
    "leak_db": -14.0,  # seal hiss re the pump
    "contamination_db": -6.0,  # particles striking the impeller and casing
    "clog_tone_db": 4.0,
    "clog_surge": 0.6,
    "clog_speed": -0.015,
    "clog_peak_shift": 0.2,
}
CONTAMINATION_SPELL_S = (2.0, 6.0)  # a slug of debris passes through


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> tuple[np.ndarray, Evidence | None]:
    """A pump clip (normal part at unit RMS), with fault `kind` of strength `s` if given, and where it shows."""
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
    tones += motor_hum(c, unit["hum_db"])

    centre, gain, width = unit["fluid_peak"]
    centre *= 1.0 - PUMP_SEVERITY["clog_peak_shift"] * clog
    fluid_env = c.envelope(
        tilt_db_per_oct=unit["fluid_tilt"] + CLIP_TILT_STD * rng.standard_normal(),
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

    evidence = None
    if kind == "clogging":
        evidence = Evidence(0.0, c.duration, 0.4 * centre, PUMP_VANES * 4 * float(np.mean(speed_curve)))
    elif kind == "contamination":
        # debris in the fluid: a crackle of small hard hits on the impeller and casing while it passes
        start, end, gate = spell(c, *CONTAMINATION_SPELL_S, ramp_s=0.1)
        times = rng.uniform(0.0, c.duration, rng.poisson(rng.uniform(5.0, 20.0) * c.duration))
        exc = bursts(c, times * c.sr, log_uniform(rng, 0.1, 1.0, len(times)), decay_s=0.0004)
        hits = unit_rms(resonate(c, exc, unit["debris_modes"])) * gate
        x += from_db(PUMP_SEVERITY["contamination_db"]) * s * hits * np.sqrt(c.duration / max(end - start, 1e-3))
        evidence = Evidence(start, end, 0.7 * min(f for f, _, _ in unit["debris_modes"]),
                            min(c.f_max, 1.4 * max(f for f, _, _ in unit["debris_modes"])))
    elif kind == "leakage":
        # a leaking seal hisses in a narrow band; the flow through it follows the pressure pulsation
        leak_hz = min(unit["leak_hz"] * (1.0 + 0.02 * rng.standard_normal()), c.f_max)
        band = c.envelope(peaks=[(leak_hz, 30.0, 0.06)])
        spurts = episodes(c, mean_on_s=0.1, mean_off_s=0.5, ramp_s=0.01)  # the seal lets go in spurts
        x += from_db(PUMP_SEVERITY["leak_db"]) * s * unit_rms(c.noise(band) * pulsation * (0.1 + spurts))
        evidence = Evidence(0.0, c.duration, leak_hz * 0.85, min(c.f_max, leak_hz * 1.18))
    return x, evidence


MODEL = MachineModel("pump", ANOMALY_KINDS, draw_unit, sound, rates=("shaft_hz",))
