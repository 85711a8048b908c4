"""Slider (slide rail): carriage stroke cycle, friction noise while moving, end-stop knocks."""

from __future__ import annotations

import numpy as np

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
    periodic_times,
    resonate,
    smooth,
    unit_rms,
)

__all__ = ["ANOMALY_KINDS", "MODEL", "draw_unit", "sound"]

SLIDER_ACCEL_FRACTION = 0.2  # of each stroke spent accelerating (and as much decelerating)
SLIDER_DRIVE_HARMONICS = 6
SLIDER_BODY = ((900.0, 4.0, 0.3), (2800.0, 4.0, 0.3))


def draw_unit(rng: np.random.Generator) -> Unit:
    """One slide rail of the model: stroke timing, drive, friction and stop resonances a little from nominal."""
    return {
        "period_s": near(rng, 0.9, 0.03),
        "move_frac": 0.82 + rng.uniform(-0.03, 0.03),
        "drive_hz": near(rng, 380.0, 0.02),
        "drive_db": -6.0 * np.log2(np.arange(1, SLIDER_DRIVE_HARMONICS + 1))
        + rng.normal(0.0, 1.5, SLIDER_DRIVE_HARMONICS),
        "drive_level_db": -5.0 + rng.uniform(-1.0, 1.0),
        "friction_peak": (near(rng, 2000.0, 0.04), 6.5 + rng.uniform(-0.7, 0.7), 0.9),
        "friction_db": -1.0 + rng.uniform(-1.0, 1.0),
        "hold_hz": near(rng, 110.0, 0.02),
        "hold_db": -16.0 + rng.uniform(-1.0, 1.0),
        "knock_modes": modes_near(
            rng, [(230.0, 0.02, 1.5), (1200.0, 0.012, 1.0), (2900.0, 0.006, 0.7)], 0.05
        ),
        "knock_db": 3.0 + rng.uniform(-1.0, 1.0),
        "return_knock_db": -3.0 + rng.uniform(-1.0, 1.0),
        "body": peaks_near(rng, SLIDER_BODY, 0.04, 0.7),
        "gain_db": rng.uniform(-1.0, 1.0),
        "dent_pos": rng.uniform(0.25, 0.75),
        "dent_modes": modes_near(rng, [(3900.0, 0.003, 1.0), (1350.0, 0.005, 0.6)], 0.1),
        "squeal_hz": near(rng, 2500.0, 0.15),
        "belt_hz": near(rng, 7.0, 0.1),
        "belt_modes": modes_near(rng, [(180.0, 0.01, 1.0), (650.0, 0.005, 0.6)], 0.1),
    }


ANOMALY_KINDS = ("rail_damage", "loose_belt", "no_grease")  # MIMII's slide-rail faults
SLIDER_SEVERITY = {
    "dent_db": 4.0,
    "belt_timing": 0.12,  # relative stroke-time jitter of a slipping belt
    "belt_wobble": 0.03,  # relative drive-speed flutter
    "belt_slap_db": -3.0,  # the slack belt slapping its guard
    "dry_friction_db": 0.0,
    "squeal_db": -10.0,
    "judder_db": -9.0,
}
SLIDER_JUDDER_S = 0.12  # how long before each stop a dry carriage judders
SLIDER_KNOCK_DB = -18.0  # energy of one knock re the drive and friction components
SLIDER_PERIOD_STD = 0.015  # relative, from clip to clip
SLIDER_STROKE_STD = 0.01  # relative, from stroke to stroke
SLIDER_DWELL_STD = 0.03


def sound(c: Clip, unit: Unit, kind: str | None, s: float) -> tuple[np.ndarray, Evidence | None]:
    """A slide-rail clip: strokes with drive whine, friction and stop knocks; fault `kind` of strength `s`."""
    rng = c.rng
    sr = c.sr
    timing = s if kind == "loose_belt" else 0.0
    period = unit["period_s"] * (1.0 + SLIDER_PERIOD_STD * rng.standard_normal())
    velocity = np.zeros(c.n)
    ends: list[tuple[float, int]] = []  # (time the carriage reaches the stop, direction)
    t = -rng.uniform(0.0, period)
    direction = 1 if rng.random() < 0.5 else -1
    while t < c.duration:
        half = period / 2
        move_jitter = SLIDER_STROKE_STD * rng.standard_normal() + SLIDER_SEVERITY[
            "belt_timing"
        ] * timing * rng.uniform(-1, 1)
        dwell_jitter = SLIDER_DWELL_STD * rng.standard_normal()
        move = unit["move_frac"] * half * (1.0 + move_jitter)
        dwell = (1.0 - unit["move_frac"]) * half * (1.0 + dwell_jitter)
        pause = 0.0
        _stroke_velocity(velocity, sr, t, move, direction, pause)
        ends.append((t + move + pause, direction))
        t += move + pause + max(dwell, 0.02)
        direction = -direction
    speed = np.abs(velocity)
    moving = smooth((speed > 0.02).astype(float), int(0.01 * sr))

    flutter = 1.0 + SLIDER_SEVERITY["belt_wobble"] * timing * c.wander(1.0, 8.0)
    drive_hz = np.maximum(unit["drive_hz"] * speed * flutter, 1.0)
    harmonics = [k for k in range(1, SLIDER_DRIVE_HARMONICS + 1) if k * unit["drive_hz"] < c.f_max]
    drive = c.tones(c.cycles(drive_hz), harmonics, from_db(unit["drive_db"][: len(harmonics)]))
    drive = unit_rms(drive * (0.3 + speed) * moving)

    centre, gain, width = unit["friction_peak"]
    body = jitter_peaks(c, unit["body"], 0.01)
    friction_env = c.envelope(
        tilt_db_per_oct=-2.0, peaks=[(centre, gain, width), *body], low_hz=200.0, high_hz=7000.0
    )
    roughness = np.clip(1.0 + c.wander(0.25, 25.0), 0.2, None)  # rail and ball-track texture
    friction = unit_rms(c.noise(friction_env) * speed**0.8 * roughness)
    if kind == "no_grease":
        friction *= from_db(SLIDER_SEVERITY["dry_friction_db"] * s)

    knock_times = np.array([e for e, _ in ends])
    knock_amps = np.array([1.0 if d > 0 else from_db(unit["return_knock_db"]) for _, d in ends])
    knock_amps *= np.exp(0.15 * rng.standard_normal(len(ends)))
    modes = unit["knock_modes"]
    knocks = resonate(c, bursts(c, knock_times * sr, knock_amps, decay_s=0.0005), modes)

    hold = c.tones(c.cycles(unit["hold_hz"]), [1], [1.0])  # servo holding-current hum
    x = (
        from_db(unit["drive_level_db"]) * drive
        + from_db(unit["friction_db"]) * friction
        + from_db(unit["knock_db"] + SLIDER_KNOCK_DB) * knocks * c.per_second
    )
    x += from_db(unit["hold_db"]) * hold

    evidence = None
    if kind == "rail_damage":
        # a dent in the rail: a click each time the carriage rolls over it, harder at speed
        position = np.cumsum(velocity)
        position = (position - position.min()) / max(float(np.ptp(position)), 1e-9)
        crossings = np.nonzero(np.diff(np.sign(position - unit["dent_pos"])) != 0)[0]
        amps = speed[crossings] * np.exp(0.3 * rng.standard_normal(len(crossings)))
        clicks = resonate(c, bursts(c, crossings.astype(float), amps, decay_s=0.001), unit["dent_modes"])
        x += from_db(unit["knock_db"] + SLIDER_KNOCK_DB + SLIDER_SEVERITY["dent_db"]) * s * clicks * c.per_second
        freqs = [f for f, _, _ in unit["dent_modes"]]
        evidence = Evidence(0.0, c.duration, 0.7 * min(freqs), min(c.f_max, 1.4 * max(freqs)))
    elif kind == "loose_belt":
        # the slack belt slaps its guard at the belt-pass rate while the carriage moves
        times = periodic_times(c, unit["belt_hz"], jitter=0.2)
        exc = bursts(c, times * sr, np.exp(0.4 * rng.standard_normal(len(times))), decay_s=0.006)
        slap = unit_rms(resonate(c, exc, unit["belt_modes"])) * moving
        x += from_db(SLIDER_SEVERITY["belt_slap_db"]) * s * slap
        freqs = [f for f, _, _ in unit["belt_modes"]]
        evidence = Evidence(0.0, c.duration, 0.7 * min(freqs), min(c.f_max, 1.4 * max(freqs)))
    elif kind == "no_grease":
        # stick-slip squeal on a dry rail, in some strokes
        gate = episodes(c, mean_on_s=period * 0.6, mean_off_s=period * 0.6, ramp_s=0.03) * moving
        squeal_hz = np.minimum(
            unit["squeal_hz"] * (1.0 + c.wander(0.015, 6.0)) * (1.0 + 0.02 * speed), c.f_max
        )
        orders = [k for k in range(1, 6) if k * unit["squeal_hz"] * 1.1 < c.f_max]
        squeal = c.tones(c.cycles(squeal_hz), orders, 0.6 ** np.arange(len(orders)))  # stick-slip is rich in harmonics
        x += from_db(SLIDER_SEVERITY["squeal_db"]) * s * squeal * gate * speed
        # and the dry carriage judders as it brakes into each stop: a rattle of stick-slip releases
        rate = rng.uniform(40.0, 70.0)
        starts = knock_times - SLIDER_JUDDER_S
        times = (starts[:, None] + np.arange(0.0, SLIDER_JUDDER_S, 1.0 / rate)[None, :]).ravel()
        judder = resonate(c, bursts(c, times * sr, np.exp(0.3 * rng.standard_normal(len(times))), decay_s=0.002),
                          [(centre, 0.004, 1.0), (0.5 * centre, 0.006, 0.7)])
        x += from_db(SLIDER_SEVERITY["judder_db"]) * s * unit_rms(judder)
        evidence = Evidence(0.0, c.duration, 0.85 * unit["squeal_hz"], min(c.f_max, 1.2 * orders[-1] * unit["squeal_hz"]))
    return x, evidence


def _stroke_velocity(
    velocity: np.ndarray, sr: int, start: float, move: float, direction: int, pause: float
) -> None:
    """Write one trapezoidal stroke (unit top speed) into `velocity`, stopping half-way for `pause` s if > 0."""
    count = max(2, int(move * sr))
    u = np.linspace(0.0, 1.0, count, endpoint=False)
    profile = np.minimum(1.0, np.minimum(u, 1.0 - u) / SLIDER_ACCEL_FRACTION)
    if pause > 0:
        mid = count // 2
        profile = np.minimum(profile, np.clip(np.abs(u - u[mid]) / SLIDER_ACCEL_FRACTION, 0.0, 1.0))
        profile = np.concatenate([profile[:mid], np.zeros(int(pause * sr)), profile[mid:]])
    i0 = int(round(start * sr))
    lo, hi = max(0, i0), min(len(velocity), i0 + len(profile))
    if hi > lo:
        velocity[lo:hi] = direction * profile[lo - i0 : hi - i0]


# the model's normal RMS: event energies stay absolute, so that missing or extra strokes change the level
MODEL = MachineModel("slider", ANOMALY_KINDS, draw_unit, sound, rms=from_db(1.25), rates=("drive_hz",), periods=("period_s",))
