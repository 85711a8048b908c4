"""Factory background, recorded the way MIMII mixed it: a pool of long, non-stationary ambiences per corpus.

MIMII mixed each machine clip with a random segment of noise recorded in real factories, at an SNR fixed
per machine model against the mean power of that model's clips (Purohit et al., 2019), so every clip's own
SNR varies with the segment it got. Here the pool is synthesized once per (seed, rate): each ambience is a
minute of a plant floor whose mix changes as it goes: a room-noise bed whose level and tilt wander, other
machines that start, run and stop (stable lines, spin-up and run-down), mains hum, impacts that come in
bouts, fork-lift passes with a reversing beeper, and compressed-air blow-offs. The pool has unit mean power
as a whole, so a segment's own power varies as a real recording's does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ssad.synthesis.signals import (
    Clip,
    bursts,
    draw_modes,
    from_db,
    log_uniform,
    resonate,
    smooth,
    unit_rms,
)

__all__ = ["POOL_SECONDS", "POOL_SIZE", "ambience_pool", "background_segment"]

POOL_SIZE = 6  # ambiences per corpus (MIMII recorded its noise in several real factories)
POOL_SECONDS = 60.0
MAINS_HZ = 50.0
BED_WANDER_DB = 3.0  # how far the ambience's level strays, slowly, in each half of the spectrum
_TAG_BACKGROUND = 3  # seed-sequence domain tag: never the stream of a unit or a clip


def _other_machine(c: Clip) -> np.ndarray:
    """A neighbouring machine: a stable harmonic series over its own noise, switched on and off with spin-up."""
    rng = c.rng
    f0 = float(log_uniform(rng, 18.0, 160.0))
    orders = [k for k in range(1, 25) if k * f0 < min(c.f_max, 4000.0)]
    amps = np.exp(-rng.uniform(0.15, 0.4) * np.arange(len(orders))) * rng.uniform(0.2, 1.0, len(orders))
    running = np.zeros(c.n)
    t, on = 0.0, rng.random() < 0.6
    while t < c.duration:
        spell = rng.exponential(25.0 if on else 15.0)
        if on:
            running[int(t * c.sr) : int((t + spell) * c.sr)] = 1.0
        t += spell
        on = not on
    speed = smooth(running, int(rng.uniform(0.8, 3.0) * c.sr))  # spin-up and run-down
    freq = f0 * np.maximum(speed, 0.05) * (1.0 + c.wander(0.0003, 0.2))
    tones = c.tones(c.cycles(freq), orders, amps)
    noise = c.noise(c.envelope(tilt_db_per_oct=-3.0, peaks=[(float(log_uniform(rng, 200.0, 3000.0)), 6.0, 0.6)],
                               low_hz=30.0, high_hz=6000.0))
    return unit_rms((unit_rms(tones) + from_db(rng.uniform(-6.0, 3.0)) * noise) * speed)


def _forklift(c: Clip) -> np.ndarray:
    """Vehicles passing: an engine's harmonics and road noise swelling and fading, a reversing beeper now and then."""
    rng = c.rng
    out = np.zeros(c.n)
    t = rng.exponential(20.0)
    while t < c.duration:
        length = rng.uniform(3.0, 9.0)
        i0, i1 = int(t * c.sr), min(c.n, int((t + length) * c.sr))
        if i1 > i0:
            u = np.arange(i1 - i0) / (length * c.sr)
            swell = np.sin(np.pi * u) ** 2
            engine = rng.uniform(25.0, 45.0) * (1.0 + 0.15 * np.sin(np.pi * u * rng.uniform(1, 3)))
            sub = Clip(i1 - i0, c.sr, rng)
            noise = sub.noise(sub.envelope(tilt_db_per_oct=-5.0, low_hz=40.0, high_hz=3000.0))
            part = unit_rms(sub.tones(sub.cycles(engine), list(range(1, 9)), 0.7 ** np.arange(8))) + noise
            if rng.random() < 0.4:
                beep = (np.sin(2 * np.pi * 1.6 * u * length) > 0).astype(float)
                part += 0.8 * sub.tones(sub.cycles(rng.uniform(900.0, 1200.0)), [1], [1.0]) * smooth(beep, 80)
            out[i0:i1] += part * swell
        t += length + rng.exponential(20.0)
    return out


def _impacts(c: Clip) -> np.ndarray:
    """Impacts in bouts (hammering, dropped parts, a press): resonant bursts clustered in time."""
    rng = c.rng
    times: list[np.ndarray] = []
    t = rng.exponential(6.0)
    while t < c.duration:
        count = rng.integers(1, 12)
        times.append(t + np.cumsum(rng.uniform(0.15, 0.8, count)))
        t += rng.exponential(8.0)
    if not times:
        return np.zeros(c.n)
    at = np.concatenate(times)
    exc = bursts(c, at * c.sr, log_uniform(rng, 0.2, 1.0, len(at)), decay_s=0.002)
    modes = draw_modes(rng, [(80.0, 400.0, 0.04, 1.0), (400.0, 1500.0, 0.015, 0.6), (1500.0, 5000.0, 0.005, 0.4)])
    return resonate(c, exc, modes) * c.per_second


def _air_blows(c: Clip) -> np.ndarray:
    """Compressed-air blow-offs: short spells of high-passed hiss."""
    rng = c.rng
    gate = np.zeros(c.n)
    t = rng.exponential(15.0)
    while t < c.duration:
        gate[int(t * c.sr) : int((t + rng.uniform(0.2, 1.5)) * c.sr)] = 1.0
        t += rng.exponential(15.0)
    return c.noise(c.envelope(tilt_db_per_oct=1.0, low_hz=1500.0, high_hz=7500.0)) * smooth(gate, int(0.03 * c.sr))


def _ambience(c: Clip) -> np.ndarray:
    """One long plant-floor recording whose mix changes as it goes."""
    rng = c.rng
    peaks = [(float(log_uniform(rng, 80.0, 2500.0)), rng.uniform(1.0, 6.0), rng.uniform(0.4, 1.2)) for _ in range(3)]
    bed = np.zeros(c.n)
    for low_hz, high_hz, tilt in ((25.0, 1200.0, -3.0), (300.0, rng.uniform(5000.0, 7500.0), -1.5)):
        # the crowd of distant sources swells and ebbs, its low and high parts each in their own way
        env = c.envelope(tilt_db_per_oct=tilt + rng.uniform(-1.0, 1.0), ref_hz=500.0, peaks=peaks,
                         low_hz=low_hz, high_hz=high_hz)
        bed += c.noise(env) * from_db(c.wander(BED_WANDER_DB, 0.1))
    hum_orders = [k for k in (1, 2, 3, 4, 6, 8) if k * MAINS_HZ < c.f_max]
    hum = unit_rms(c.tones(c.cycles(MAINS_HZ), hum_orders, rng.uniform(0.2, 1.0, len(hum_orders))))
    x = bed + from_db(rng.uniform(-20.0, -10.0)) * hum
    for _ in range(rng.integers(1, 4)):
        x += from_db(rng.uniform(-8.0, 2.0)) * _other_machine(c)
    x += from_db(rng.uniform(-6.0, 2.0)) * _forklift(c)
    x += from_db(rng.uniform(-16.0, -6.0)) * _impacts(c)
    x += from_db(rng.uniform(-18.0, -8.0)) * _air_blows(c)
    return x


@functools.lru_cache(maxsize=4)
def ambience_pool(seed: int, sample_rate: int, size: int = POOL_SIZE, seconds: float = POOL_SECONDS) -> tuple[np.ndarray, ...]:
    """The corpus's factory ambiences (float32), a function of (seed, rate) alone, unit mean power over the pool."""
    n = int(round(seconds * sample_rate))
    pool = []
    for k in range(size):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_BACKGROUND, k]))
        pool.append(_ambience(Clip(n, sample_rate, rng)))
    power = float(np.mean([np.mean(np.square(x)) for x in pool]))
    scale = 1.0 / math.sqrt(power) if power > 0 else 1.0
    return tuple((x * scale).astype(np.float32) for x in pool)


def background_segment(c: Clip, seed: int, ambiences: Sequence[int] | None = None) -> np.ndarray:
    """A random segment of one of the pool's ambiences (any, or one of `ambiences`), wrapping round if the clip is longer."""
    pool = ambience_pool(seed, c.sr)
    choices = range(len(pool)) if ambiences is None else ambiences
    x = pool[choices[int(c.rng.integers(len(choices)))]]
    start = int(c.rng.integers(len(x)))
    if start + c.n <= len(x):
        return x[start : start + c.n].astype(np.float64)
    return np.take(x, np.arange(start, start + c.n), mode="wrap").astype(np.float64)
