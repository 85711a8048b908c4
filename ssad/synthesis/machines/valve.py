"""Valve (solenoid): open/close transients in a duty cycle, flow noise while open."""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from ssad.synthesis.machines.model import Evidence, MachineModel, Unit
from ssad.synthesis.signals import (
    Clip,
    bursts,
    episodes,
    from_db,
    jitter_peaks,
    modes_near,
    near,
    peaks_near,
    ring,
    smooth,
    spell,
)

__all__ = ["ANOMALY_KINDS", "MODEL", "draw_unit", "sound"]

# MIMII's valve fault is contamination, of several kinds: debris that makes the plunger stick and
# open late, that makes it bounce (chatter), or that holds the seat open a crack (leak).
ANOMALY_KINDS = ("contamination_sticking", "contamination_chatter", "contamination_leak")
CHATTER_SPELL_S = (1.0, 2.5)
VALVE_SEVERITY = {
    "skip_prob": 0.0,
    "timing_jitter": 0.06,  # of the period
    "leak_db": -8.0,  # re the open-flow level
    "bounce": 2.0,
    "stick_delay_s": 0.06,
    "stick_attack": 3.0,
    "stick_click": 0.3,  # relative loss of the opening click
    "stick_flow": 0.0,  # relative loss of flow (partial opening)
    "stick_tick": 0.5,  # the first, weak tick of a two-step opening, re the full click
}
VALVE_BOUNCE_RATIOS = (0.7, 0.5, 0.35, 0.25)  # successive plunger bounces, re the main click
VALVE_EVENT_JITTER_S = 0.004
VALVE_PULSES = 2  # the model's duty cycle: two openings per cycle, then a rest
VALVE_CLOSE_WEIGHTS = np.array([0.7, 1.1, 0.6])  # the closing hit excites the modes differently
VALVE_BODY = ((1500.0, 4.0, 0.3), (4200.0, 4.0, 0.3))
VALVE_BUZZ_HZ = 100.0  # an AC solenoid hums at twice the line frequency while energized
VALVE_CLICK_DB = -20.0  # one click re the flow noise
VALVE_PERIOD_STD = 0.01  # relative, from clip to clip
VALVE_OPEN_STD = 0.02  # relative, from opening to opening


def draw_unit(rng: np.random.Generator) -> Unit:
    """One solenoid valve of the model in its duty cycle: timing, click modes and flow a little from nominal."""
    return {
        "period_s": near(rng, 0.95, 0.08),
        "pulses": VALVE_PULSES,
        "open_frac": (0.4 + rng.uniform(-0.06, 0.06)) / VALVE_PULSES,
        "gap_frac": 0.12 + rng.uniform(-0.03, 0.03),
        "click_modes": modes_near(
            rng, [(2100.0, 0.005, 1.0), (4000.0, 0.0035, 0.8), (460.0, 0.01, 0.8)], 0.08
        ),
        "close_weights": VALVE_CLOSE_WEIGHTS * np.exp(rng.uniform(-0.2, 0.2, 3)),
        "close_db": -3.0 + rng.uniform(-1.5, 1.5),
        "flow_peak": (near(rng, 2000.0, 0.12), 9.0 + rng.uniform(-1.5, 1.5), 0.85),
        "flow_db": -10.0 + rng.uniform(-1.5, 1.5),
        "attack_s": near(rng, 0.018, 0.25),
        "release_s": near(rng, 0.01, 0.25),
        "buzz_db": -25.0 + rng.uniform(-3.0, 3.0),
        "body": peaks_near(rng, VALVE_BODY, 0.08, 1.5),
        "gain_db": rng.uniform(-1.0, 1.0),
        "leak_hz": near(rng, 4500.0, 0.15),
    }


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> tuple[np.ndarray, Evidence | None]:
    """A solenoid-valve clip: clicks and flow in the unit's duty cycle; fault `kind` of strength `s`."""
    rng = c.rng
    sr = c.sr
    period = unit["period_s"] * (1.0 + VALVE_PERIOD_STD * rng.standard_normal())
    irregular = s if kind == "contamination_sticking" else 0.0
    sticking = s if kind == "contamination_sticking" else 0.0
    opens: list[float] = []
    closes: list[float] = []
    coil = np.zeros(c.n)
    cycle_start = -rng.uniform(0.0, period)
    while cycle_start < c.duration:
        start = cycle_start
        for _ in range(unit["pulses"]):
            shift = VALVE_SEVERITY["timing_jitter"] * irregular * period * rng.uniform(-0.5, 0.5)
            open_t = start + shift + VALVE_EVENT_JITTER_S * rng.standard_normal()
            close_t = open_t + unit["open_frac"] * period * (1.0 + VALVE_OPEN_STD * rng.standard_normal())
            if not (irregular and rng.random() < VALVE_SEVERITY["skip_prob"] * irregular):
                coil[max(0, int(open_t * sr)) : max(0, int(close_t * sr))] = 1.0
                # a sticking plunger moves late after the coil is energized
                opens.append(open_t + VALVE_SEVERITY["stick_delay_s"] * sticking * rng.uniform(0.3, 1.0))
                closes.append(close_t + VALVE_EVENT_JITTER_S * rng.standard_normal())
            start = open_t + (unit["open_frac"] + unit["gap_frac"]) * period
        cycle_start += period
    opens_a, closes_a = np.array(opens), np.array(closes)

    open_amp = np.exp(0.1 * rng.standard_normal(len(opens_a))) * (
        1.0 - VALVE_SEVERITY["stick_click"] * sticking
    )
    close_amp = from_db(unit["close_db"]) * np.exp(0.1 * rng.standard_normal(len(closes_a)))
    open_t_all, open_a_all, close_t_all, close_a_all = opens_a, open_amp, closes_a, close_amp
    if sticking:
        # the plunger breaks free in two steps: a weak first tick when the coil pulls, the full hit later
        tick_t = opens_a - rng.uniform(0.02, 0.06, len(opens_a)) * sticking
        tick_a = open_amp * VALVE_SEVERITY["stick_tick"] * rng.uniform(0.6, 1.0, len(opens_a))
        open_t_all, open_a_all = np.concatenate([opens_a, tick_t]), np.concatenate([open_amp, tick_a])
    evidence = None
    if kind == "contamination_sticking":
        evidence = Evidence(0.0, c.duration, 300.0, min(c.f_max, 7500.0))
    if kind == "contamination_chatter":
        # the plunger bounces off its seat and stop: quick repeated clicks after each transition, while
        # a grain of debris is caught
        chatter_start, chatter_end, _ = spell(c, *CHATTER_SPELL_S)
        extra = []
        for times, amps in ((opens_a, open_amp), (closes_a, close_amp)):
            during = (times >= chatter_start) & (times < chatter_end)
            times, amps = times[during], amps[during]
            delay = np.zeros(len(times))
            bounce_t, bounce_a = [], []
            for ratio in VALVE_BOUNCE_RATIOS:
                delay = delay + rng.uniform(0.012, 0.04, len(times))
                bounce_t.append(times + delay)
                bounce_a.append(amps * ratio * VALVE_SEVERITY["bounce"] * s * rng.uniform(0.5, 1.0, len(times)))
            extra.append((np.concatenate(bounce_t), np.concatenate(bounce_a)))
        open_t_all, open_a_all = np.concatenate([opens_a, extra[0][0]]), np.concatenate([open_amp, extra[0][1]])
        close_t_all, close_a_all = np.concatenate([closes_a, extra[1][0]]), np.concatenate([close_amp, extra[1][1]])
        freqs = [f for f, _, _ in unit["click_modes"]]
        evidence = Evidence(chatter_start, chatter_end, 0.7 * min(freqs), min(c.f_max, 1.4 * max(freqs)))
    open_exc = bursts(c, open_t_all * sr, open_a_all, decay_s=0.0003)
    close_exc = bursts(c, close_t_all * sr, close_a_all, decay_s=0.0003)
    clicks = np.zeros(c.n)
    for (freq, decay_s, weight), close_weight in zip(unit["click_modes"], unit["close_weights"], strict=True):
        clicks += weight * ring(c, open_exc + close_weight * close_exc, freq, decay_s)

    valve_open = np.zeros(c.n)
    for o, cl in zip(opens_a, closes_a, strict=True):
        valve_open[max(0, int(o * sr)) : max(0, int(cl * sr))] = 1.0
    attack_s = unit["attack_s"] * (1.0 + VALVE_SEVERITY["stick_attack"] * sticking)
    flow_gate = _attack_release(valve_open, sr, attack_s, unit["release_s"]) * (
        1.0 - VALVE_SEVERITY["stick_flow"] * sticking
    )
    centre, gain, width = unit["flow_peak"]
    body = jitter_peaks(c, unit["body"], 0.01)
    flow_env = c.envelope(
        peaks=[(centre * (1.0 + 0.02 * rng.standard_normal()), gain, width), *body],
        low_hz=300.0,
        high_hz=7500.0,
    )
    flow_noise = c.noise(flow_env)
    buzz = c.tones(c.cycles(VALVE_BUZZ_HZ), [1, 2, 3], [1.0, 0.6, 0.3]) * smooth(coil, int(0.005 * sr))

    x = (
        from_db(VALVE_CLICK_DB) * clicks * c.per_second
        + from_db(unit["flow_db"] + 0.5 * rng.standard_normal()) * flow_noise * flow_gate
    )
    x += from_db(unit["buzz_db"]) * buzz
    if kind == "contamination_leak":
        # debris holds the seat open a crack: while closed, the leak path whistles in spurts
        whistle = c.noise(c.envelope(peaks=[(min(unit["leak_hz"], c.f_max), 25.0, 0.05)]))
        x += (
            from_db(unit["flow_db"] + VALVE_SEVERITY["leak_db"])
            * s
            * whistle
            * (1.0 - flow_gate)
            * episodes(c, mean_on_s=0.05, mean_off_s=0.4, ramp_s=0.005)  # debris makes the seat sputter
        )
        leak_hz = min(unit["leak_hz"], c.f_max)
        evidence = Evidence(0.0, c.duration, 0.85 * leak_hz, min(c.f_max, 1.2 * leak_hz))
    return x, evidence


def _attack_release(gate: np.ndarray, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    """Smooth a 0/1 gate: exponential rise with `attack_s` while open, exponential fall with `release_s` after."""
    a_up = math.exp(-1.0 / (attack_s * sr))
    a_down = math.exp(-1.0 / (release_s * sr))
    rise = signal.lfilter([1.0 - a_up], [1.0, -a_up], gate)
    fall = signal.lfilter([1.0 - a_down], [1.0, -a_down], gate)
    return np.where(gate > 0, rise, np.minimum(fall, rise))


# the model's normal RMS: event energies stay absolute, so that missing or extra clicks change the level
MODEL = MachineModel("valve", ANOMALY_KINDS, draw_unit, sound, rms=from_db(-9.9), periods=("period_s",))
