"""Signal building blocks of the synthetic machines: one clip's random stream and the primitives that draw from it.

Spectral envelopes on a log-frequency grid, shaped noise, wavetable harmonic series, impulses, noise
bursts, damped resonances, intermittent gates, event times, and a unit's parameters drawn near a
model's nominal values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import signal

__all__ = [
    "Clip",
    "bursts",
    "draw_modes",
    "episodes",
    "from_db",
    "impulses",
    "jitter_peaks",
    "log_uniform",
    "modes_near",
    "near",
    "peaks_near",
    "periodic_times",
    "resonate",
    "response_db",
    "ring",
    "smooth",
    "spell",
    "unit_rms",
]

NYQUIST_MARGIN = 0.45  # partials and resonances stay below this fraction of the sample rate
GRID_POINTS = 1536  # log-frequency grid on which spectral envelopes are evaluated (~0.01 octave apart)
GRID_LOW_HZ = 5.0
CONTROL_STEP = 32  # slow control curves (speed drift, gates) are computed every this many samples
WAVETABLE_OVERSAMPLING = 64  # table samples per cycle of the highest partial: interpolation error < -60 dB


@functools.lru_cache(maxsize=8)
def _grid_map(n: int, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-frequency grid and, for each rfft bin, its grid cell and position in the cell."""
    lo, hi = math.log2(GRID_LOW_HZ), math.log2(sr / 2.0)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    pos = (np.log2(np.maximum(freqs, GRID_LOW_HZ)) - lo) / (hi - lo) * (GRID_POINTS - 1)
    cell = np.minimum(pos.astype(np.int64), GRID_POINTS - 2)
    return 2.0 ** np.linspace(lo, hi, GRID_POINTS), cell, pos - cell


def response_db(
    freqs: np.ndarray,
    *,
    tilt_db_per_oct: float = 0.0,
    ref_hz: float = 1000.0,
    peaks: Sequence[tuple[float, float, float]] = (),
    low_hz: float | None = None,
    high_hz: float | None = None,
    order: int = 2,
) -> np.ndarray:
    """Level in dB at `freqs`: a tilt per octave, Gaussian-in-octaves peaks (centre Hz, dB, width oct), Butterworth edges."""
    octaves = np.log2(np.maximum(freqs, 1.0) / ref_hz)
    db = tilt_db_per_oct * octaves
    for centre, gain_db, width_oct in peaks:
        db = db + gain_db * np.exp(-0.5 * ((octaves - math.log2(centre / ref_hz)) / width_oct) ** 2)
    if low_hz is not None:
        db = db - 10.0 * np.log10(1.0 + (low_hz / np.maximum(freqs, 1e-3)) ** (2 * order))
    if high_hz is not None:
        db = db - 10.0 * np.log10(1.0 + (freqs / high_hz) ** (2 * order))
    return db


@dataclass
class Clip:
    """One clip being built: its size, rate and random stream, with the signal primitives that draw from it."""

    n: int
    sr: int
    rng: np.random.Generator

    @property
    def duration(self) -> float:
        return self.n / self.sr

    @property
    def f_max(self) -> float:
        return NYQUIST_MARGIN * self.sr

    @property
    def per_second(self) -> float:
        """Gain that gives a train of unit-energy events, one a second, unit mean power."""
        return math.sqrt(self.sr)

    def envelope(self, **spec: Any) -> np.ndarray:
        """Amplitude response on the rfft bins; `spec` as for `response_db`."""
        grid, cell, frac = _grid_map(self.n, self.sr)
        amp = 10.0 ** (response_db(grid, **spec) / 20.0)
        return amp[cell] + frac * (amp[cell + 1] - amp[cell])

    def noise(self, amplitude: np.ndarray) -> np.ndarray:
        """Gaussian noise with the amplitude spectrum `amplitude`, unit RMS, drawn directly as a spectrum."""
        white = self.rng.standard_normal(2 * len(amplitude), dtype=np.float32).view(np.complex64)
        return unit_rms(sfft.irfft(white * amplitude.astype(np.float32), self.n).astype(np.float64))

    def shape(self, x: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
        """`x` filtered by an amplitude response on the rfft bins."""
        return sfft.irfft(sfft.rfft(x) * amplitude, self.n)

    def wander(self, std: float, knots_per_s: float) -> np.ndarray:
        """Slow random curve, mean about 0: straight lines between Gaussian knots, held per control step."""
        knots = max(2, int(math.ceil(self.duration * knots_per_s)) + 1)
        steps = -(-self.n // CONTROL_STEP)
        coarse = np.interp(
            np.arange(steps) * CONTROL_STEP,
            np.linspace(0, self.n - 1, knots),
            std * self.rng.standard_normal(knots),
        )
        return np.repeat(coarse, CONTROL_STEP)[: self.n]

    def cycles(self, freq: np.ndarray | float) -> np.ndarray:
        """Running cycle count of an instantaneous frequency (Hz), from a random start."""
        if np.ndim(freq) == 0:
            return float(freq) * np.arange(self.n) / self.sr + self.rng.random()
        return np.cumsum(freq) / self.sr + self.rng.random()

    def tones(self, cycles: np.ndarray, orders: Sequence[int], amps: Sequence[float]) -> np.ndarray:
        """Sum of amp * sin(2 pi order * cycles + random phase): a harmonic series, by one wavetable lookup."""
        orders_a = np.asarray(orders, dtype=np.int64)
        size = max(256, 1 << int(math.ceil(math.log2(max(1, int(orders_a.max())) * WAVETABLE_OVERSAMPLING))))
        spectrum = np.zeros(size // 2 + 1, dtype=np.complex128)
        phases = self.rng.uniform(0.0, 2.0 * np.pi, len(orders_a))
        np.add.at(
            spectrum, orders_a, np.asarray(amps, dtype=float) * np.exp(1j * (phases - np.pi / 2)) * (size / 2)
        )
        table = np.fft.irfft(spectrum, size)
        table = np.append(table, table[0])
        pos = np.floor(cycles)
        np.subtract(cycles, pos, out=pos)
        pos *= size
        cell = pos.astype(np.intp)
        pos -= cell
        left = table.take(cell)
        cell += 1
        right = table.take(cell)
        right -= left
        right *= pos
        right += left
        return right


def unit_rms(x: np.ndarray) -> np.ndarray:
    # not np.dot: on a busy machine its BLAS threads stall
    rms = math.sqrt(float(np.square(x).mean())) if len(x) else 0.0
    return x / rms if rms > 0 else x


def from_db(value: Any) -> Any:
    return 10.0 ** (np.asarray(value) / 20.0) if np.ndim(value) else 10.0 ** (value / 20.0)


def log_uniform(rng: np.random.Generator, low: float, high: float, size: int | None = None) -> Any:
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` samples, in O(n)."""
    if width <= 1:
        return x
    padded = np.concatenate([np.full(width // 2, x[0]), x, np.full(width - width // 2, x[-1])])
    csum = np.cumsum(padded)
    return (csum[width:] - csum[:-width])[: len(x)] / width


def impulses(n: int, positions: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Impulse train: `amps` at sample `positions`; those outside the clip are dropped."""
    out = np.zeros(n)
    idx = np.round(np.asarray(positions, dtype=float)).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    np.add.at(out, idx[keep], np.asarray(amps, dtype=float)[keep])
    return out


def bursts(c: Clip, positions: np.ndarray, amps: np.ndarray, decay_s: float) -> np.ndarray:
    """Exponentially decaying white-noise bursts of unit energy at sample `positions`: contacts, hits, splashes."""
    length = max(2, int(5 * decay_s * c.sr))
    env = np.exp(-np.arange(length) / (decay_s * c.sr))
    env /= math.sqrt(float(np.square(env).sum()))
    out = np.zeros(c.n + length)
    idx = np.round(np.asarray(positions, dtype=float)).astype(np.int64)
    keep = (idx >= 0) & (idx < c.n)
    idx, amps = idx[keep], np.asarray(amps, dtype=float)[keep]
    if len(idx):
        kernels = c.rng.standard_normal((len(idx), length)) * env
        for i, a, k in zip(idx, amps, kernels, strict=True):
            out[i : i + length] += a * k
    return out[: c.n]


def ring(c: Clip, excitation: np.ndarray, freq: float, decay_s: float) -> np.ndarray:
    """A damped resonance (two-pole filter) driven by `excitation`, scaled to unit impulse-response energy."""
    w = 2.0 * math.pi * min(freq, c.f_max) / c.sr
    r = math.exp(-1.0 / (decay_s * c.sr))
    gain = math.sin(w) * math.sqrt(2.0 * (1.0 - r * r))
    return signal.lfilter([gain], [1.0, -2.0 * r * math.cos(w), r * r], excitation)


def resonate(c: Clip, excitation: np.ndarray, modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """A struck structure: resonances (freq Hz, decay s, weight) all driven by `excitation`."""
    out = np.zeros(c.n)
    for freq, decay_s, weight in modes:
        out += weight * ring(c, excitation, freq, decay_s)
    return out


def episodes(c: Clip, mean_on_s: float, mean_off_s: float, ramp_s: float = 0.02) -> np.ndarray:
    """0..1 gate of exponentially distributed on and off spells with soft edges: an intermittent fault."""
    gate = np.zeros(c.n)
    on = c.rng.random() < mean_on_s / (mean_on_s + mean_off_s)
    t = 0.0
    while t < c.duration:
        spell = c.rng.exponential(mean_on_s if on else mean_off_s)
        if on:
            gate[int(t * c.sr) : int((t + spell) * c.sr)] = 1.0
        t += spell
        on = not on
    return smooth(gate, int(ramp_s * c.sr))


def spell(c: Clip, min_s: float, max_s: float, ramp_s: float = 0.05) -> tuple[float, float, np.ndarray]:
    """One span of `min_s`..`max_s` s at a random place in the clip, and its soft 0..1 gate: a fault that comes and goes."""
    length = min(c.duration, c.rng.uniform(min_s, max_s))
    start = c.rng.uniform(0.0, c.duration - length)
    gate = np.zeros(c.n)
    gate[int(start * c.sr) : int((start + length) * c.sr)] = 1.0
    return start, start + length, smooth(gate, max(1, int(ramp_s * c.sr)))


def periodic_times(c: Clip, rate_hz: float, jitter: float) -> np.ndarray:
    """Event times (s) at `rate_hz` with relative interval jitter, from a random phase."""
    count = int(c.duration * rate_hz) + 2
    intervals = np.maximum(0.2, 1.0 + jitter * c.rng.standard_normal(count)) / rate_hz
    return c.rng.uniform(0.0, 1.0 / rate_hz) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])


def jitter_peaks(
    c: Clip, peaks: Sequence[tuple[float, float, float]], rel: float
) -> list[tuple[float, float, float]]:
    """Resonances move a little with temperature and load: centres shifted by a small relative amount."""
    return [(f * (1.0 + rel * c.rng.standard_normal()), g, w) for f, g, w in peaks]


def draw_modes(
    rng: np.random.Generator, spec: Sequence[tuple[float, float, float, float]]
) -> list[tuple[float, float, float]]:
    """Draw resonances from (low Hz, high Hz, decay s, weight) ranges, log-uniform in frequency."""
    return [(float(log_uniform(rng, lo, hi)), decay, weight) for lo, hi, decay, weight in spec]


def near(rng: np.random.Generator, nominal: float, spread: float) -> float:
    """A unit's value of a model parameter: `nominal` times a factor log-uniform within +-`spread`."""
    return float(nominal * math.exp(rng.uniform(-spread, spread)))


def peaks_near(
    rng: np.random.Generator,
    nominal: Sequence[tuple[float, float, float]],
    spread: float,
    gain_spread_db: float,
) -> list[tuple[float, float, float]]:
    """A unit's resonances: the model's (centre Hz, gain dB, width oct), centres and gains moved a little."""
    return [
        (near(rng, f, spread), g + float(rng.uniform(-gain_spread_db, gain_spread_db)), w)
        for f, g, w in nominal
    ]


def modes_near(
    rng: np.random.Generator, nominal: Sequence[tuple[float, float, float]], spread: float
) -> list[tuple[float, float, float]]:
    """A unit's struck modes: the model's (freq Hz, decay s, weight), frequencies and decays moved a little."""
    return [(near(rng, f, spread), near(rng, d, 2 * spread), w) for f, d, w in nominal]

