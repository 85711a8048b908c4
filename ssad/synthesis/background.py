"""Factory background: the ambience every machine clip is mixed with at a set SNR."""

from __future__ import annotations

import numpy as np

from ssad.synthesis.signals import (
    Clip,
    bursts,
    draw_modes,
    from_db,
    log_uniform,
    resonate,
    unit_rms,
)

__all__ = ["background"]


def background(c: Clip) -> np.ndarray:
    """Factory ambience: coloured noise with room modes, a distant machine's hum, occasional far impacts."""
    rng = c.rng
    peaks = [
        (float(log_uniform(rng, 80.0, 2500.0)), rng.uniform(1.0, 5.0), rng.uniform(0.5, 1.2))
        for _ in range(2)
    ]
    env = c.envelope(
        tilt_db_per_oct=rng.uniform(-5.0, -3.0),
        ref_hz=500.0,
        peaks=peaks,
        low_hz=25.0,
        high_hz=rng.uniform(4000.0, 7000.0),
    )
    bg = c.noise(env) * np.clip(1.0 + c.wander(0.08, 0.5), 0.5, None)

    hum_f0 = rng.uniform(20.0, 60.0)
    orders = [k for k in range(1, 9) if k * hum_f0 < c.f_max]
    hum_amps = np.exp(-0.4 * np.arange(len(orders))) * rng.uniform(0.3, 1.0, len(orders))
    hum = unit_rms(c.tones(c.cycles(hum_f0 * (1.0 + c.wander(0.002, 0.5))), orders, hum_amps))
    bg = bg + from_db(rng.uniform(-18.0, -8.0)) * hum

    count = rng.poisson(rng.uniform(0.0, 0.3) * c.duration)
    if count:
        times = rng.uniform(0.0, c.duration, count)
        exc = bursts(c, times * c.sr, log_uniform(rng, 0.3, 1.0, count), decay_s=0.002)
        modes = draw_modes(rng, [(80.0, 400.0, 0.03, 1.0), (400.0, 1500.0, 0.01, 0.5)])
        bg = bg + from_db(rng.uniform(-16.0, -4.0)) * resonate(c, exc, modes) * c.per_second
    return unit_rms(bg)
