"""Fan: blade-pass tone and harmonics over broadband airflow, shaft-rate modulation."""

from __future__ import annotations

import numpy as np

from ssad.synthesis.machines.model import MachineModel, Unit
from ssad.synthesis.machines.rotating import (
    CLIP_LOAD_STD_DB,
    CLIP_PEAK_SHIFT_STD,
    CLIP_TILT_STD,
    bearing_defect,
    blade_series,
    rotor,
    rotor_rub,
)
from ssad.synthesis.signals import (
    Clip,
    from_db,
    impulses,
    modes_near,
    near,
    peaks_near,
    periodic_times,
    resonate,
    response_db,
    unit_rms,
)

__all__ = ["ANOMALY_KINDS", "MODEL", "draw_unit", "sound"]

FAN_SHAFT_HZ = 16.0  # ~960 rpm industrial ventilation fan
FAN_BLADES = 7
FAN_BPF_HARMONICS = 30
# The model's blade-pass harmonic levels (dB): roll-off with a fixed ripple from the blade shape.
FAN_BPF_PROFILE_DB = -7.0 * np.log2(np.arange(1, FAN_BPF_HARMONICS + 1)) + 2.5 * np.sin(
    1.7 * np.arange(1, FAN_BPF_HARMONICS + 1)
)
FAN_BODY = ((450.0, 4.0, 0.25), (1300.0, 5.0, 0.3), (3200.0, 4.0, 0.3))  # housing resonances (Hz, dB, oct)


def draw_unit(rng: np.random.Generator) -> Unit:
    """One fan of the model: speed, harmonic levels and resonances a few per cent or dB from nominal."""
    k = np.arange(1, FAN_BPF_HARMONICS + 1)
    return {
        "shaft_hz": near(rng, FAN_SHAFT_HZ, 0.01),
        "bpf_db": FAN_BPF_PROFILE_DB + rng.normal(0.0, 0.8, len(k)),
        "shaft_db": -16.0 + rng.normal(0.0, 2.0, 4),
        "tonal_db": -6.5 + rng.uniform(-1.0, 1.0),
        "air_tilt": -3.2 + rng.uniform(-0.3, 0.3),
        "air_peak": (near(rng, 800.0, 0.06), 5.5 + rng.uniform(-1.0, 1.0), 0.9),
        "air_high_hz": near(rng, 5200.0, 0.08),
        "bpf_am": near(rng, 0.25, 0.2),
        "shaft_am": near(rng, 0.03, 0.3),
        "body": peaks_near(rng, FAN_BODY, 0.05, 1.0),
        "gain_db": rng.uniform(-1.0, 1.0),
        "ball_pass_order": near(rng, 3.3, 0.05),
        "bearing_modes": modes_near(rng, [(3800.0, 0.0012, 1.0), (1800.0, 0.002, 0.5)], 0.1),
        "rub_hz": near(rng, 2700.0, 0.1),
        "rattle_modes": modes_near(rng, [(1400.0, 0.004, 1.0), (3500.0, 0.002, 0.6)], 0.1),
    }


ANOMALY_KINDS = ("bearing", "imbalance", "rubbing", "clogging")
# Effect sizes at severity 1: component levels in dB re the normal machine, or changes of a parameter.
FAN_SEVERITY = {
    "bearing_db": -16.0,
    "imbalance_am": 0.4,
    "imbalance_tone_db": 12.0,
    "rattle_db": -15.0,
    "rub_db": -16.0,
    "clog_tilt": -0.6,
    "clog_tone_db": 2.5,
    "clog_stall": 0.4,
    "clog_speed": 0.02,
}


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A fan clip (normal part at unit RMS), with fault `kind` of strength `s` if given."""
    rng = c.rng
    clog = s if kind == "clogging" else 0.0
    imbalance = s if kind == "imbalance" else 0.0
    speed, speed_curve, cycles, body = rotor(c, unit, FAN_SEVERITY["clog_speed"] * clog)
    bpf_orders, bpf_db = blade_series(
        c, unit["bpf_db"], FAN_BLADES, FAN_BPF_HARMONICS, speed, FAN_SEVERITY["clog_tone_db"] * clog
    )
    shaft_db = unit["shaft_db"] + FAN_SEVERITY["imbalance_tone_db"] * imbalance * np.array(
        [1.0, 0.5, 0.0, 0.0]
    )
    orders = [1, 2, 3, 4, *bpf_orders]
    tone_db = np.concatenate([shaft_db, bpf_db]) + response_db(np.array(orders) * speed, peaks=body)
    tones = unit_rms(c.tones(cycles, orders, from_db(tone_db)))

    centre, gain, width = unit["air_peak"]
    air_env = c.envelope(
        tilt_db_per_oct=unit["air_tilt"]
        + CLIP_TILT_STD * rng.standard_normal()
        + FAN_SEVERITY["clog_tilt"] * clog,
        peaks=[
            (centre * (1.0 + CLIP_PEAK_SHIFT_STD * rng.standard_normal()) * (1.0 - 0.3 * clog), gain, width),
            *body,
        ],
        low_hz=40.0,
        high_hz=unit["air_high_hz"],
    )
    # turbulence sheds from each blade: the airflow noise is modulated at the blade-pass rate
    air = c.noise(air_env) * (1.0 + unit["bpf_am"] * c.tones(cycles, [FAN_BLADES], [1.0]))
    if kind == "clogging":
        # flow separation on a blocked inlet: rotating stall makes the airflow surge irregularly
        air *= np.clip(1.0 + FAN_SEVERITY["clog_stall"] * clog * c.wander(1.0, 4.0), 0.2, None)
    load_db = CLIP_LOAD_STD_DB * rng.standard_normal()
    x = air + from_db(unit["tonal_db"] + load_db) * tones
    x *= 1.0 + (unit["shaft_am"] + FAN_SEVERITY["imbalance_am"] * imbalance) * c.tones(cycles, [1], [1.0])
    x = unit_rms(x)

    mean_speed = float(np.mean(speed_curve))
    if kind == "bearing":
        x += from_db(FAN_SEVERITY["bearing_db"]) * s * bearing_defect(c, unit, mean_speed)
    elif kind == "rubbing":
        x += from_db(FAN_SEVERITY["rub_db"]) * s * rotor_rub(c, unit, mean_speed)
    elif kind == "imbalance":
        # the wobble makes a loose guard rattle once per turn
        times = periodic_times(c, mean_speed, jitter=0.05)
        exc = impulses(c.n, times * c.sr, np.exp(0.5 * rng.standard_normal(len(times))))
        x += from_db(FAN_SEVERITY["rattle_db"]) * s * unit_rms(resonate(c, exc, unit["rattle_modes"]))
    return x


MODEL = MachineModel("fan", ANOMALY_KINDS, draw_unit, sound)
