"""Fan: blade-pass tone and harmonics over broadband airflow, shaft-rate modulation."""

from __future__ import annotations

import numpy as np

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit
from ssad.synthesis.machines.rotating import (
    CLIP_LOAD_STD_DB,
    CLIP_PEAK_SHIFT_STD,
    CLIP_TILT_STD,
    blade_series,
    motor_hum,
    rotor,
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
    spell,
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
        "bpf_db": FAN_BPF_PROFILE_DB + rng.normal(0.0, 1.5, len(k)),
        "shaft_db": -16.0 + rng.normal(0.0, 2.0, 4),
        "tonal_db": -4.5 + rng.uniform(-1.0, 1.0),
        "air_tilt": -3.2 + rng.uniform(-0.3, 0.3),
        "air_peak": (near(rng, 800.0, 0.06), 5.5 + rng.uniform(-1.0, 1.0), 0.9),
        "air_high_hz": near(rng, 5200.0, 0.08),
        "bpf_am": near(rng, 0.25, 0.2),
        "shaft_am": near(rng, 0.03, 0.3),
        "body": peaks_near(rng, FAN_BODY, 0.05, 1.0),
        "gain_db": rng.uniform(-1.0, 1.0),
        "rattle_modes": modes_near(rng, [(1400.0, 0.004, 1.0), (3500.0, 0.002, 0.6)], 0.1),
        "hum_db": -24.0 + rng.uniform(-2.0, 2.0),
    }


ANOMALY_KINDS = ("unbalance", "voltage_change", "clogging")  # MIMII's fan faults
# Effect sizes at severity 1: component levels in dB re the normal machine, or changes of a parameter.
FAN_SEVERITY = {
    "unbalance_am": 0.12,  # once-per-revolution modulation depth: sidebands round every line
    "unbalance_tone_db": 8.0,  # the 1x and 2x shaft lines
    "rattle_db": -24.0,  # a loose guard rattling once per turn
    "voltage_speed": 0.035,  # relative speed change: every rotation line moves
    "voltage_tone_db": 2.0,
    "clog_tilt": -0.5,
    "clog_tone_db": 2.0,
    "clog_stall": 0.3,
    "clog_peak_shift": 0.15,
}
CLOG_SPELL_S = (2.0, 6.0)  # a blockage that builds and clears within the clip


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> tuple[np.ndarray, Evidence | None]:
    """A fan clip (normal part at unit RMS), with fault `kind` of strength `s` if given, and where it shows."""
    rng = c.rng
    voltage = s * (1.0 if rng.random() < 0.5 else -1.0) if kind == "voltage_change" else 0.0
    unbalance = s if kind == "unbalance" else 0.0
    speed, speed_curve, cycles, body = rotor(c, unit, FAN_SEVERITY["voltage_speed"] * voltage)
    bpf_orders, bpf_db = blade_series(
        c, unit["bpf_db"], FAN_BLADES, FAN_BPF_HARMONICS, speed, FAN_SEVERITY["voltage_tone_db"] * voltage
    )
    shaft_db = unit["shaft_db"] + FAN_SEVERITY["unbalance_tone_db"] * unbalance * np.array([1.0, 0.5, 0.0, 0.0])
    orders = [1, 2, 3, 4, *bpf_orders]
    tone_db = np.concatenate([shaft_db, bpf_db]) + response_db(np.array(orders) * speed, peaks=body)
    tones = unit_rms(c.tones(cycles, orders, from_db(tone_db)))

    clog = np.zeros(c.n)
    evidence = None
    if kind == "clogging":
        start, end, clog = spell(c, *CLOG_SPELL_S, ramp_s=0.4)
        clog *= s
    centre, gain, width = unit["air_peak"]
    air_env = c.envelope(
        tilt_db_per_oct=unit["air_tilt"] + CLIP_TILT_STD * rng.standard_normal(),
        peaks=[(centre * (1.0 + CLIP_PEAK_SHIFT_STD * rng.standard_normal()), gain, width), *body],
        low_hz=40.0,
        high_hz=unit["air_high_hz"],
    )
    # turbulence sheds from each blade: the airflow noise is modulated at the blade-pass rate
    air = c.noise(air_env) * (1.0 + unit["bpf_am"] * c.tones(cycles, [FAN_BLADES], [1.0]))
    if kind == "clogging":
        # a blocked inlet: the flow hump sinks and narrows, the blade tones rise, rotating stall surges
        blocked = c.noise(c.envelope(
            tilt_db_per_oct=unit["air_tilt"] + FAN_SEVERITY["clog_tilt"],
            peaks=[(centre * (1.0 - FAN_SEVERITY["clog_peak_shift"]), gain + 3.0, width * 0.7), *body],
            low_hz=40.0, high_hz=unit["air_high_hz"]))
        surge = np.clip(1.0 + FAN_SEVERITY["clog_stall"] * c.wander(1.0, 4.0), 0.2, None)
        mix = np.clip(clog, 0.0, 1.0)
        air = (1.0 - mix) * air + mix * blocked * surge
        tones *= from_db(FAN_SEVERITY["clog_tone_db"] * clog)
        evidence = Evidence(start, end, 0.3 * centre, 3.0 * centre)
    load_db = CLIP_LOAD_STD_DB * rng.standard_normal()
    x = air + from_db(unit["tonal_db"] + load_db) * tones
    x *= 1.0 + (unit["shaft_am"] + FAN_SEVERITY["unbalance_am"] * unbalance) * c.tones(cycles, [1], [1.0])
    x = unit_rms(x) + motor_hum(c, unit["hum_db"])

    mean_speed = float(np.mean(speed_curve))
    if kind == "unbalance":
        # the wobble makes a loose guard rattle once per turn
        times = periodic_times(c, mean_speed, jitter=0.05)
        exc = impulses(c.n, times * c.sr, np.exp(0.5 * rng.standard_normal(len(times))))
        x += from_db(FAN_SEVERITY["rattle_db"]) * s * unit_rms(resonate(c, exc, unit["rattle_modes"]))
        evidence = Evidence(0.0, c.duration, 0.5 * mean_speed, 2.5 * FAN_BLADES * mean_speed)
    elif kind == "voltage_change":
        bpf = FAN_BLADES * mean_speed
        evidence = Evidence(0.0, c.duration, 0.8 * bpf, min(c.f_max, 12.0 * bpf))
    return x, evidence


MODEL = MachineModel("fan", ANOMALY_KINDS, draw_unit, sound, rates=("shaft_hz",))
