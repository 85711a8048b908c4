"""Synthetic machine sounds (fan, pump, slider, valve) in the DCASE 2020 Task 2 layout.

Real corpora cannot be downloaded where ssad is developed, so the demo, the tests and the benchmarks
run on sounds made here from simple physical models: rotating machines (fan, pump) as harmonic series
of a drifting shaft rate over shaped, modulated flow noise; reciprocating ones (slider, valve) as event
schedules whose hits excite resonances. Each machine ID is one unit of a fixed model, its physical
parameters a few per cent or dB from nominal; each clip varies within its unit (speed and load drift,
phases, timing, factory background at a set SNR). Anomalies are faults whose evidence is largely
temporal (impulse trains, modulation, bursts, irregular timing), so that a plain long-term average
spectrum finds them only in part; an anomalous clip's fault cycles through its type's kinds
(`ANOMALY_KINDS`) with the clip index, so every kind is equally represented.

Everything is reproducible: a unit's parameters come from (seed, type, id) alone and a clip's random
draws from (seed, type, id, split, label, index), so the same seed writes byte-identical files
whatever the number of worker processes, and adding clips or types leaves existing ones unchanged.
"""

from __future__ import annotations

import ctypes
import functools
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft
import soundfile as sf
from scipy import signal
from tqdm import tqdm

__all__ = [
    "ANOMALY_KINDS",
    "MACHINE_TYPES",
    "PRESETS",
    "SynthConfig",
    "SynthSummary",
    "clip_filename",
    "generate",
    "machine_ids",
    "synthesize_clip",
]

MACHINE_TYPES: tuple[str, ...] = ("fan", "pump", "slider", "valve")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "fan": ("bearing", "imbalance", "rubbing", "clogging"),
    "pump": ("cavitation", "leak", "clogging", "bearing"),
    "slider": ("stroke_timing", "rail_damage", "dry_friction", "end_stop"),
    "valve": ("irregular", "seat_leak", "chatter", "sticking"),
}
SPLITS: tuple[str, ...] = ("train", "test")
LABELS: tuple[str, ...] = ("normal", "anomaly")

# DCASE 2020 numbers the IDs of a type 00, 02, 04, 06 (odd ones were held out for evaluation).
ID_STEP = 2
MAX_IDS_PER_TYPE = 50  # IDs stay two digits
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 96000
MIN_DURATION_S = 0.1
MAX_DURATION_S = 600.0
SNR_RANGE_DB = (-30.0, 60.0)
SEVERITY_RANGE = (0.0, 2.0)

LEVEL_DBFS = -34.0  # clip RMS, near the real corpus (about -39 dBFS) with headroom for impulses
PEAK_LIMIT = 10 ** (-1.0 / 20.0)  # never closer than 1 dB to full scale
PCM_SCALE = 32767.0
NYQUIST_MARGIN = 0.45  # partials and resonances stay below this fraction of the sample rate
CLIP_GAIN_STD_DB = 0.7  # microphone/load level variation from clip to clip
CLIP_SNR_JITTER_DB = 1.5  # background level varies around the configured SNR
CLIP_SPEED_STD = 0.01  # relative: line voltage and load move a motor's speed from clip to clip
SPEED_DRIFT_STD = 0.003  # relative: and within a clip, slowly
SPEED_HEADROOM = 1.03  # partials are kept only if they stay below the limit at this much above nominal speed
CLIP_HARMONIC_STD_DB = 0.7  # each harmonic's level wanders a little with load
CLIP_LOAD_STD_DB = 0.8  # tonal-to-noise balance from clip to clip
CLIP_TILT_STD = 0.15  # dB/octave: the operating point tilts a rotating machine's noise from clip to clip
CLIP_PEAK_SHIFT_STD = 0.05  # relative: and moves its flow-noise hump
SEVERITY_SPREAD = (0.5, 1.5)  # each anomalous clip's severity is the configured one times this range
AUTO_WORKERS_MIN_AUDIO_S = 600.0  # below this much audio a process pool costs more than it saves
MAX_AUTO_WORKERS = 8

# Seed-sequence domain tags, so unit and clip streams can never coincide.
_TAG_UNIT = 1
_TAG_CLIP = 2

Unit = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Configuration


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesize: machine types, IDs, clip counts, clip format, background and anomaly strength.

    Attributes:
        machine_types: subset of `MACHINE_TYPES`.
        ids_per_type: units per type, numbered 00, 02, 04, ... as in DCASE 2020.
        train_per_id: normal training clips per ID.
        test_normal_per_id: normal test clips per ID.
        test_anomaly_per_id: anomalous test clips per ID.
        duration_s: clip length in seconds.
        sample_rate: Hz.
        snr_db: machine-to-background power ratio (each clip jitters around it).
        severity: anomaly strength: 0 = no fault, 1 = strong, 2 at most; the default 0.5 makes a
            moderate benchmark (a plain mean-log-mel Gaussian finds about three anomalies in four).
        anomaly_kinds: restrict anomalies to these kinds (None: all kinds of each type, see
            `ANOMALY_KINDS`); every selected type must keep at least one kind.
    """

    machine_types: tuple[str, ...] = MACHINE_TYPES
    ids_per_type: int = 4
    train_per_id: int = 30
    test_normal_per_id: int = 15
    test_anomaly_per_id: int = 15
    duration_s: float = 10.0
    sample_rate: int = 16000
    snr_db: float = 6.0
    severity: float = 0.5
    anomaly_kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        types = tuple(self.machine_types)
        unknown = [t for t in types if t not in MACHINE_TYPES]
        if not types or unknown or len(set(types)) != len(types):
            msg = f"machine_types must be distinct names from {MACHINE_TYPES}, got {self.machine_types!r}"
            raise ValueError(msg)
        object.__setattr__(self, "machine_types", types)
        if not _is_int(self.ids_per_type) or not 1 <= self.ids_per_type <= MAX_IDS_PER_TYPE:
            msg = f"ids_per_type must be an integer in 1..{MAX_IDS_PER_TYPE}, got {self.ids_per_type!r}"
            raise ValueError(msg)
        for name in ("train_per_id", "test_normal_per_id", "test_anomaly_per_id"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                msg = f"{name} must be a non-negative integer, got {value!r}"
                raise ValueError(msg)
        if self.train_per_id + self.test_normal_per_id + self.test_anomaly_per_id == 0:
            msg = "train_per_id, test_normal_per_id and test_anomaly_per_id are all 0: nothing to synthesize"
            raise ValueError(msg)
        if not _is_real(self.duration_s) or not MIN_DURATION_S <= self.duration_s <= MAX_DURATION_S:
            msg = f"duration_s must be in [{MIN_DURATION_S}, {MAX_DURATION_S}] s, got {self.duration_s!r}"
            raise ValueError(msg)
        if not _is_int(self.sample_rate) or not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            msg = f"sample_rate must be an integer in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {self.sample_rate!r}"
            raise ValueError(msg)

        if not _is_real(self.snr_db) or not SNR_RANGE_DB[0] <= self.snr_db <= SNR_RANGE_DB[1]:
            msg = f"snr_db must be in [{SNR_RANGE_DB[0]}, {SNR_RANGE_DB[1]}] dB, got {self.snr_db!r}"
            raise ValueError(msg)
        if not _is_real(self.severity) or not SEVERITY_RANGE[0] <= self.severity <= SEVERITY_RANGE[1]:
            msg = f"severity must be in [{SEVERITY_RANGE[0]}, {SEVERITY_RANGE[1]}], got {self.severity!r}"
            raise ValueError(msg)
        if self.anomaly_kinds is not None:
            kinds = tuple(self.anomaly_kinds)
            known = sorted({k for t in MACHINE_TYPES for k in ANOMALY_KINDS[t]})
            bad = [k for k in kinds if k not in known]
            if not kinds or bad:
                msg = f"anomaly_kinds must be None or names from {known}, got {self.anomaly_kinds!r}"
                raise ValueError(msg)
            object.__setattr__(self, "anomaly_kinds", kinds)
            if self.test_anomaly_per_id > 0:
                empty = [t for t in types if not self.kinds_for(t)]
                if empty:
                    msg = f"anomaly_kinds={kinds!r} leaves no kind for {empty}; their kinds are {[ANOMALY_KINDS[t] for t in empty]}"
                    raise ValueError(msg)

    def kinds_for(self, machine_type: str) -> tuple[str, ...]:
        """The anomaly kinds that anomalous clips of `machine_type` draw from."""
        kinds = ANOMALY_KINDS[machine_type]
        if self.anomaly_kinds is None:
            return kinds
        return tuple(k for k in kinds if k in self.anomaly_kinds)

    @property
    def num_samples(self) -> int:
        """Samples per clip."""
        return int(round(self.duration_s * self.sample_rate))

    @property
    def total_clips(self) -> int:
        """Clips that `generate` writes for this configuration."""
        per_id = self.train_per_id + self.test_normal_per_id + self.test_anomaly_per_id
        return len(self.machine_types) * self.ids_per_type * per_id


PRESETS: dict[str, SynthConfig] = {
    # For tests: every type and ID, short clips, generated in a few seconds.
    "tiny": SynthConfig(duration_s=2.0, train_per_id=6, test_normal_per_id=3, test_anomaly_per_id=3),
    # The embedded default set: 4 types x 4 IDs x (30 train + 15 + 15 test) = 960 clips of 10 s.
    "default": SynthConfig(),
}


def machine_ids(config: SynthConfig) -> tuple[int, ...]:
    """The machine ID numbers of each type: 0, 2, 4, ... as in DCASE 2020."""
    return tuple(ID_STEP * k for k in range(config.ids_per_type))


def clip_filename(label: str, machine_id: int, index: int) -> str:
    """DCASE 2020 file name, e.g. ``anomaly_id_02_00000007.wav``."""
    return f"{label}_id_{machine_id:02d}_{index:08d}.wav"


# --------------------------------------------------------------------------------------------------
# Signal building blocks

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


def _response_db(
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
class _Clip:
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
        """Amplitude response on the rfft bins; `spec` as for `_response_db`."""
        grid, cell, frac = _grid_map(self.n, self.sr)
        amp = 10.0 ** (_response_db(grid, **spec) / 20.0)
        return amp[cell] + frac * (amp[cell + 1] - amp[cell])

    def noise(self, amplitude: np.ndarray) -> np.ndarray:
        """Gaussian noise with the amplitude spectrum `amplitude`, unit RMS, drawn directly as a spectrum."""
        white = self.rng.standard_normal(2 * len(amplitude), dtype=np.float32).view(np.complex64)
        return _unit_rms(sfft.irfft(white * amplitude.astype(np.float32), self.n).astype(np.float64))

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


def _unit_rms(x: np.ndarray) -> np.ndarray:
    # not np.dot: on a busy machine its BLAS threads stall
    rms = math.sqrt(float(np.square(x).mean())) if len(x) else 0.0
    return x / rms if rms > 0 else x


def _db(value: Any) -> Any:
    return 10.0 ** (np.asarray(value) / 20.0) if np.ndim(value) else 10.0 ** (value / 20.0)


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int | None = None) -> Any:
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` samples, in O(n)."""
    if width <= 1:
        return x
    padded = np.concatenate([np.full(width // 2, x[0]), x, np.full(width - width // 2, x[-1])])
    csum = np.cumsum(padded)
    return (csum[width:] - csum[:-width])[: len(x)] / width


def _impulses(n: int, positions: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Impulse train: `amps` at sample `positions`; those outside the clip are dropped."""
    out = np.zeros(n)
    idx = np.round(np.asarray(positions, dtype=float)).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    np.add.at(out, idx[keep], np.asarray(amps, dtype=float)[keep])
    return out


def _bursts(c: _Clip, positions: np.ndarray, amps: np.ndarray, decay_s: float) -> np.ndarray:
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


def _ring(c: _Clip, excitation: np.ndarray, freq: float, decay_s: float) -> np.ndarray:
    """A damped resonance (two-pole filter) driven by `excitation`, scaled to unit impulse-response energy."""
    w = 2.0 * math.pi * min(freq, c.f_max) / c.sr
    r = math.exp(-1.0 / (decay_s * c.sr))
    gain = math.sin(w) * math.sqrt(2.0 * (1.0 - r * r))
    return signal.lfilter([gain], [1.0, -2.0 * r * math.cos(w), r * r], excitation)


def _resonate(c: _Clip, excitation: np.ndarray, modes: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """A struck structure: resonances (freq Hz, decay s, weight) all driven by `excitation`."""
    out = np.zeros(c.n)
    for freq, decay_s, weight in modes:
        out += weight * _ring(c, excitation, freq, decay_s)
    return out


def _episodes(c: _Clip, mean_on_s: float, mean_off_s: float, ramp_s: float = 0.02) -> np.ndarray:
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
    return _smooth(gate, int(ramp_s * c.sr))


def _periodic_times(c: _Clip, rate_hz: float, jitter: float) -> np.ndarray:
    """Event times (s) at `rate_hz` with relative interval jitter, from a random phase."""
    count = int(c.duration * rate_hz) + 2
    intervals = np.maximum(0.2, 1.0 + jitter * c.rng.standard_normal(count)) / rate_hz
    return c.rng.uniform(0.0, 1.0 / rate_hz) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])


def _jitter_peaks(
    c: _Clip, peaks: Sequence[tuple[float, float, float]], rel: float
) -> list[tuple[float, float, float]]:
    """Resonances move a little with temperature and load: centres shifted by a small relative amount."""
    return [(f * (1.0 + rel * c.rng.standard_normal()), g, w) for f, g, w in peaks]


def _modes(
    rng: np.random.Generator, spec: Sequence[tuple[float, float, float, float]]
) -> list[tuple[float, float, float]]:
    """Draw resonances from (low Hz, high Hz, decay s, weight) ranges, log-uniform in frequency."""
    return [(float(_log_uniform(rng, lo, hi)), decay, weight) for lo, hi, decay, weight in spec]


def _near(rng: np.random.Generator, nominal: float, spread: float) -> float:
    """A unit's value of a model parameter: `nominal` times a factor log-uniform within +-`spread`."""
    return float(nominal * math.exp(rng.uniform(-spread, spread)))


def _peaks_near(
    rng: np.random.Generator,
    nominal: Sequence[tuple[float, float, float]],
    spread: float,
    gain_spread_db: float,
) -> list[tuple[float, float, float]]:
    """A unit's resonances: the model's (centre Hz, gain dB, width oct), centres and gains moved a little."""
    return [
        (_near(rng, f, spread), g + float(rng.uniform(-gain_spread_db, gain_spread_db)), w)
        for f, g, w in nominal
    ]


def _modes_near(
    rng: np.random.Generator, nominal: Sequence[tuple[float, float, float]], spread: float
) -> list[tuple[float, float, float]]:
    """A unit's struck modes: the model's (freq Hz, decay s, weight), frequencies and decays moved a little."""
    return [(_near(rng, f, spread), _near(rng, d, 2 * spread), w) for f, d, w in nominal]


# --------------------------------------------------------------------------------------------------
# Faults shared by rotating machines


def _bearing_defect(c: _Clip, unit: Unit, shaft_hz: float) -> np.ndarray:
    """Outer-race spall: resonant impulses at the ball-pass rate, load-zone modulated, in intermittent spells."""
    rate = shaft_hz * unit["ball_pass_order"]
    times = _periodic_times(c, rate, jitter=0.015)  # rolling elements slip a little
    load_zone = 1.0 + 0.7 * np.cos(2.0 * np.pi * shaft_hz * times + c.rng.uniform(0, 2 * np.pi))
    amps = load_zone * np.exp(0.3 * c.rng.standard_normal(len(times)))
    exc = _impulses(c.n, times * c.sr, amps) * _episodes(c, mean_on_s=0.7, mean_off_s=0.7)
    return _unit_rms(_resonate(c, exc, unit["bearing_modes"]))


def _rotor_rub(c: _Clip, unit: Unit, shaft_hz: float) -> np.ndarray:
    """Rotor touching its casing once per turn during rub spells: friction bursts and a squeal."""
    times = _periodic_times(c, shaft_hz, jitter=0.03)
    gate = _episodes(c, mean_on_s=0.35, mean_off_s=0.9, ramp_s=0.03)
    exc = _bursts(c, times * c.sr, np.exp(0.4 * c.rng.standard_normal(len(times))), decay_s=0.004)
    contact = _unit_rms(
        _resonate(c, exc, [(unit["rub_hz"], 0.0006, 1.0), (1.7 * unit["rub_hz"], 0.0004, 0.6)])
    )
    squeal_hz = np.minimum(
        unit["rub_hz"] * (1.0 + 0.02 * c.rng.standard_normal()) * (1.0 + c.wander(0.01, 8.0)), c.f_max
    )
    squeal = c.tones(c.cycles(squeal_hz), [1], [1.0])
    return _unit_rms((contact + 0.7 * squeal) * gate)


# --------------------------------------------------------------------------------------------------
# Fan: blade-pass tone and harmonics over broadband airflow, shaft-rate modulation

FAN_SHAFT_HZ = 16.0  # ~960 rpm industrial ventilation fan
FAN_BLADES = 7
FAN_BPF_HARMONICS = 30
# The model's blade-pass harmonic levels (dB): roll-off with a fixed ripple from the blade shape.
FAN_BPF_PROFILE_DB = -7.0 * np.log2(np.arange(1, FAN_BPF_HARMONICS + 1)) + 2.5 * np.sin(
    1.7 * np.arange(1, FAN_BPF_HARMONICS + 1)
)
FAN_BODY = ((450.0, 4.0, 0.25), (1300.0, 5.0, 0.3), (3200.0, 4.0, 0.3))  # housing resonances (Hz, dB, oct)


def _fan_unit(rng: np.random.Generator) -> Unit:
    """One fan of the model: speed, harmonic levels and resonances a few per cent or dB from nominal."""
    k = np.arange(1, FAN_BPF_HARMONICS + 1)
    return {
        "shaft_hz": _near(rng, FAN_SHAFT_HZ, 0.01),
        "bpf_db": FAN_BPF_PROFILE_DB + rng.normal(0.0, 0.8, len(k)),
        "shaft_db": -16.0 + rng.normal(0.0, 2.0, 4),
        "tonal_db": -6.5 + rng.uniform(-1.0, 1.0),
        "air_tilt": -3.2 + rng.uniform(-0.3, 0.3),
        "air_peak": (_near(rng, 800.0, 0.06), 5.5 + rng.uniform(-1.0, 1.0), 0.9),
        "air_high_hz": _near(rng, 5200.0, 0.08),
        "bpf_am": _near(rng, 0.25, 0.2),
        "shaft_am": _near(rng, 0.03, 0.3),
        "body": _peaks_near(rng, FAN_BODY, 0.05, 1.0),
        "gain_db": rng.uniform(-1.0, 1.0),
        "ball_pass_order": _near(rng, 3.3, 0.05),
        "bearing_modes": _modes_near(rng, [(3800.0, 0.0012, 1.0), (1800.0, 0.002, 0.5)], 0.1),
        "rub_hz": _near(rng, 2700.0, 0.1),
        "rattle_modes": _modes_near(rng, [(1400.0, 0.004, 1.0), (3500.0, 0.002, 0.6)], 0.1),
    }


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


def _rotor(c: _Clip, unit: Unit, speed_shift: float) -> tuple[float, np.ndarray, np.ndarray, Any]:
    """A rotating machine's shaft speed for this clip, its drift over the clip, cycle phase, and jittered body."""
    speed = unit["shaft_hz"] * (1.0 + CLIP_SPEED_STD * c.rng.standard_normal() + speed_shift)
    speed_curve = speed * (1.0 + c.wander(SPEED_DRIFT_STD, 1.0))
    return speed, speed_curve, c.cycles(speed_curve), _jitter_peaks(c, unit["body"], 0.01)


def _blade_series(
    c: _Clip, unit_db: np.ndarray, count: int, harmonics: int, speed: float, shift_db: float
) -> tuple[list[int], np.ndarray]:
    """Blade- or vane-pass orders (count x k) that stay below the band limit, and their levels for this clip."""
    orders = [count * k for k in range(1, harmonics + 1) if count * k * speed * SPEED_HEADROOM < c.f_max]
    levels = unit_db[: len(orders)] + shift_db + c.rng.normal(0.0, CLIP_HARMONIC_STD_DB, len(orders))
    return orders, levels


def _fan(c: _Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A fan clip (normal part at unit RMS), with fault `kind` of strength `s` if given."""
    rng = c.rng
    clog = s if kind == "clogging" else 0.0
    imbalance = s if kind == "imbalance" else 0.0
    speed, speed_curve, cycles, body = _rotor(c, unit, FAN_SEVERITY["clog_speed"] * clog)
    bpf_orders, bpf_db = _blade_series(
        c, unit["bpf_db"], FAN_BLADES, FAN_BPF_HARMONICS, speed, FAN_SEVERITY["clog_tone_db"] * clog
    )
    shaft_db = unit["shaft_db"] + FAN_SEVERITY["imbalance_tone_db"] * imbalance * np.array(
        [1.0, 0.5, 0.0, 0.0]
    )
    orders = [1, 2, 3, 4, *bpf_orders]
    tone_db = np.concatenate([shaft_db, bpf_db]) + _response_db(np.array(orders) * speed, peaks=body)
    tones = _unit_rms(c.tones(cycles, orders, _db(tone_db)))

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
    x = air + _db(unit["tonal_db"] + load_db) * tones
    x *= 1.0 + (unit["shaft_am"] + FAN_SEVERITY["imbalance_am"] * imbalance) * c.tones(cycles, [1], [1.0])
    x = _unit_rms(x)

    mean_speed = float(np.mean(speed_curve))
    if kind == "bearing":
        x += _db(FAN_SEVERITY["bearing_db"]) * s * _bearing_defect(c, unit, mean_speed)
    elif kind == "rubbing":
        x += _db(FAN_SEVERITY["rub_db"]) * s * _rotor_rub(c, unit, mean_speed)
    elif kind == "imbalance":
        # the wobble makes a loose guard rattle once per turn
        times = _periodic_times(c, mean_speed, jitter=0.05)
        exc = _impulses(c.n, times * c.sr, np.exp(0.5 * rng.standard_normal(len(times))))
        x += _db(FAN_SEVERITY["rattle_db"]) * s * _unit_rms(_resonate(c, exc, unit["rattle_modes"]))
    return x


# --------------------------------------------------------------------------------------------------
# Pump: impeller harmonics, fluid noise, pulsation

PUMP_SHAFT_HZ = 24.5  # ~1470 rpm, a 4-pole motor
PUMP_VANES = 6
PUMP_ROTOR_SLOTS = 28
PUMP_VANE_HARMONICS = 12
PUMP_HUM_HZ = 100.0  # magnetostriction hum at twice a 50 Hz line frequency
PUMP_VANE_PROFILE_DB = -5.0 * np.log2(np.arange(1, PUMP_VANE_HARMONICS + 1)) + 2.0 * np.sin(
    2.3 * np.arange(1, PUMP_VANE_HARMONICS + 1)
)
PUMP_BODY = ((380.0, 4.0, 0.3), (1100.0, 5.0, 0.3), (2600.0, 4.0, 0.3))


def _pump_unit(rng: np.random.Generator) -> Unit:
    """One pump of the model: speed, impeller harmonics, flow and resonances a little from nominal."""
    return {
        "shaft_hz": _near(rng, PUMP_SHAFT_HZ, 0.008),
        "vane_db": PUMP_VANE_PROFILE_DB + rng.normal(0.0, 0.8, PUMP_VANE_HARMONICS),
        "shaft_db": -14.0 + rng.normal(0.0, 2.0, 5),
        "slot_db": -17.0 + rng.uniform(-1.5, 1.5),
        "hum_db": -19.0 + rng.uniform(-1.5, 1.5),
        "tonal_db": -3.0 + rng.uniform(-1.0, 1.0),
        "fluid_tilt": -3.0 + rng.uniform(-0.3, 0.3),
        "fluid_peak": (_near(rng, 350.0, 0.06), 6.5 + rng.uniform(-1.0, 1.0), 0.75),
        "fluid_high_hz": _near(rng, 4500.0, 0.04),
        "vane_am": _near(rng, 0.18, 0.2),
        "pulse_hz": _near(rng, 0.8, 0.15),
        "pulse_depth": _near(rng, 0.14, 0.2),
        "splash_rate": _near(rng, 30.0, 0.2),
        "splash_db": -10.0 + rng.uniform(-1.5, 1.5),
        "splash_modes": _modes_near(rng, [(2800.0, 0.0005, 1.0), (5200.0, 0.0003, 0.7)], 0.1),
        "body": _peaks_near(rng, PUMP_BODY, 0.04, 0.7),
        "gain_db": rng.uniform(-1.0, 1.0),
        "ball_pass_order": _near(rng, 3.3, 0.05),
        "bearing_modes": _modes_near(rng, [(3800.0, 0.0012, 1.0), (1800.0, 0.002, 0.5)], 0.1),
        "leak_hz": _near(rng, 4000.0, 0.15),
    }


PUMP_SEVERITY = {
    "cavitation_db": -14.0,
    "leak_db": -22.0,
    "bearing_db": -16.0,
    "clog_tone_db": 5.0,
    "clog_tilt": -1.0,
    "clog_surge": 0.6,
    "clog_speed": -0.02,
}


def _pump(c: _Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A pump clip (normal part at unit RMS), with fault `kind` of strength `s` if given."""
    rng = c.rng
    clog = s if kind == "clogging" else 0.0
    speed, speed_curve, cycles, body = _rotor(c, unit, PUMP_SEVERITY["clog_speed"] * clog)
    vane_orders, vane_db = _blade_series(
        c, unit["vane_db"], PUMP_VANES, PUMP_VANE_HARMONICS, speed, PUMP_SEVERITY["clog_tone_db"] * clog
    )
    slot_orders = [
        o for o in (PUMP_ROTOR_SLOTS, 2 * PUMP_ROTOR_SLOTS) if o * speed * SPEED_HEADROOM < c.f_max
    ]
    orders = [1, 2, 3, 4, 5, *vane_orders, *slot_orders]
    tone_db = np.concatenate([unit["shaft_db"], vane_db, unit["slot_db"] - 6.0 * np.arange(len(slot_orders))])
    tone_db = tone_db + _response_db(np.array(orders) * speed, peaks=body)
    tones = _unit_rms(c.tones(cycles, orders, _db(tone_db)))
    hum_orders = [k for k in (1, 2, 3) if k * PUMP_HUM_HZ < c.f_max]
    tones += _db(unit["hum_db"]) * c.tones(
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
    splash_exc = _bursts(
        c, splash_times * c.sr, _log_uniform(rng, 0.3, 1.0, len(splash_times)), decay_s=0.004
    )
    splash = _unit_rms(_resonate(c, splash_exc, unit["splash_modes"]))
    load_db = CLIP_LOAD_STD_DB * rng.standard_normal()
    x = _unit_rms(fluid + _db(unit["tonal_db"] + load_db) * tones + _db(unit["splash_db"]) * splash)

    mean_speed = float(np.mean(speed_curve))
    if kind == "bearing":
        x += _db(PUMP_SEVERITY["bearing_db"]) * s * _bearing_defect(c, unit, mean_speed)
    elif kind == "cavitation":
        # vapour bubbles collapse in crackling bursts: dense sharp clicks while the inlet pressure is low
        gate = _episodes(c, mean_on_s=0.5, mean_off_s=0.8, ramp_s=0.05)
        times = rng.uniform(0.0, c.duration, rng.poisson(rng.uniform(200.0, 600.0) * c.duration))
        exc = _impulses(c.n, times * c.sr, _log_uniform(rng, 0.1, 1.0, len(times))) * gate
        crackle = _unit_rms(c.shape(exc, c.envelope(tilt_db_per_oct=1.0, low_hz=1500.0, high_hz=7500.0)))
        x += _db(PUMP_SEVERITY["cavitation_db"]) * s * crackle
    elif kind == "leak":
        # a leaking seal hisses in a narrow band; the flow through it follows the pressure pulsation
        band = c.envelope(
            peaks=[(min(unit["leak_hz"] * (1.0 + 0.02 * rng.standard_normal()), c.f_max), 30.0, 0.06)]
        )
        x += _db(PUMP_SEVERITY["leak_db"]) * s * _unit_rms(c.noise(band) * pulsation)
    return x


# --------------------------------------------------------------------------------------------------
# Slider: carriage stroke cycle, friction noise while moving, end-stop knocks

SLIDER_ACCEL_FRACTION = 0.2  # of each stroke spent accelerating (and as much decelerating)
SLIDER_DRIVE_HARMONICS = 6
SLIDER_BODY = ((900.0, 4.0, 0.3), (2800.0, 4.0, 0.3))


def _slider_unit(rng: np.random.Generator) -> Unit:
    """One slide rail of the model: stroke timing, drive, friction and stop resonances a little from nominal."""
    return {
        "period_s": _near(rng, 0.9, 0.03),
        "move_frac": 0.82 + rng.uniform(-0.03, 0.03),
        "drive_hz": _near(rng, 380.0, 0.02),
        "drive_db": -6.0 * np.log2(np.arange(1, SLIDER_DRIVE_HARMONICS + 1))
        + rng.normal(0.0, 1.5, SLIDER_DRIVE_HARMONICS),
        "drive_level_db": -5.0 + rng.uniform(-1.0, 1.0),
        "friction_peak": (_near(rng, 2000.0, 0.04), 6.5 + rng.uniform(-0.7, 0.7), 0.9),
        "friction_db": -1.0 + rng.uniform(-1.0, 1.0),
        "hold_hz": _near(rng, 110.0, 0.02),
        "hold_db": -16.0 + rng.uniform(-1.0, 1.0),
        "knock_modes": _modes_near(
            rng, [(230.0, 0.02, 1.5), (1200.0, 0.012, 1.0), (2900.0, 0.006, 0.7)], 0.05
        ),
        "knock_db": 3.0 + rng.uniform(-1.0, 1.0),
        "return_knock_db": -3.0 + rng.uniform(-1.0, 1.0),
        "body": _peaks_near(rng, SLIDER_BODY, 0.04, 0.7),
        "gain_db": rng.uniform(-1.0, 1.0),
        "dent_pos": rng.uniform(0.25, 0.75),
        "dent_modes": _modes_near(rng, [(3900.0, 0.003, 1.0), (1350.0, 0.005, 0.6)], 0.1),
        "squeal_hz": _near(rng, 2500.0, 0.15),
    }


SLIDER_SEVERITY = {
    "timing_dwell": 0.3,  # relative dwell jitter
    "timing_move": 0.1,  # relative stroke-time jitter
    "hesitation_prob": 0.35,
    "dent_db": 0.0,
    "dry_friction_db": 2.0,
    "squeal_db": -11.0,
    "end_stop_db": 1.0,
    "end_stop_ring": 0.8,  # relative lengthening of the knock decay
    "rebound": 0.4,
}
SLIDER_KNOCK_DB = -18.0  # energy of one knock re the drive and friction components
SLIDER_PERIOD_STD = 0.015  # relative, from clip to clip
SLIDER_STROKE_STD = 0.01  # relative, from stroke to stroke
SLIDER_DWELL_STD = 0.03


def _slider(c: _Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A slide-rail clip: strokes with drive whine, friction and stop knocks; fault `kind` of strength `s`."""
    rng = c.rng
    sr = c.sr
    timing = s if kind == "stroke_timing" else 0.0
    period = unit["period_s"] * (1.0 + SLIDER_PERIOD_STD * rng.standard_normal())
    velocity = np.zeros(c.n)
    ends: list[tuple[float, int]] = []  # (time the carriage reaches the stop, direction)
    t = -rng.uniform(0.0, period)
    direction = 1 if rng.random() < 0.5 else -1
    while t < c.duration:
        half = period / 2
        move_jitter = SLIDER_STROKE_STD * rng.standard_normal() + SLIDER_SEVERITY[
            "timing_move"
        ] * timing * rng.uniform(-1, 1)
        dwell_jitter = SLIDER_DWELL_STD * rng.standard_normal() + SLIDER_SEVERITY[
            "timing_dwell"
        ] * timing * rng.uniform(-1, 1)
        move = unit["move_frac"] * half * (1.0 + move_jitter)
        dwell = (1.0 - unit["move_frac"]) * half * (1.0 + dwell_jitter)
        pause = 0.0
        if kind == "stroke_timing" and rng.random() < SLIDER_SEVERITY["hesitation_prob"] * timing:
            pause = rng.uniform(0.05, 0.25)
        _stroke_velocity(velocity, sr, t, move, direction, pause)
        ends.append((t + move + pause, direction))
        t += move + pause + max(dwell, 0.02)
        direction = -direction
    speed = np.abs(velocity)
    moving = _smooth((speed > 0.02).astype(float), int(0.01 * sr))

    drive_hz = np.maximum(unit["drive_hz"] * speed, 1.0)
    harmonics = [k for k in range(1, SLIDER_DRIVE_HARMONICS + 1) if k * unit["drive_hz"] < c.f_max]
    drive = c.tones(c.cycles(drive_hz), harmonics, _db(unit["drive_db"][: len(harmonics)]))
    drive = _unit_rms(drive * (0.3 + speed) * moving)

    centre, gain, width = unit["friction_peak"]
    body = _jitter_peaks(c, unit["body"], 0.01)
    friction_env = c.envelope(
        tilt_db_per_oct=-2.0, peaks=[(centre, gain, width), *body], low_hz=200.0, high_hz=7000.0
    )
    roughness = np.clip(1.0 + c.wander(0.25, 25.0), 0.2, None)  # rail and ball-track texture
    friction = _unit_rms(c.noise(friction_env) * speed**0.8 * roughness)
    if kind == "dry_friction":
        friction *= _db(SLIDER_SEVERITY["dry_friction_db"] * s)

    knock_times = np.array([e for e, _ in ends])
    knock_amps = np.array([1.0 if d > 0 else _db(unit["return_knock_db"]) for _, d in ends])
    knock_amps *= np.exp(0.15 * rng.standard_normal(len(ends)))
    modes = unit["knock_modes"]
    if kind == "end_stop":
        # a worn, loose stopper: harder hits that ring longer and bounce back
        knock_amps *= _db(SLIDER_SEVERITY["end_stop_db"] * s)
        modes = [(f, d * (1.0 + SLIDER_SEVERITY["end_stop_ring"] * s), w) for f, d, w in modes]
        bounce = rng.uniform(0.03, 0.08, len(ends))
        knock_times = np.concatenate([knock_times, knock_times + bounce])
        knock_amps = np.concatenate(
            [knock_amps, knock_amps * SLIDER_SEVERITY["rebound"] * s * rng.uniform(0.4, 0.8, len(ends))]
        )
    knocks = _resonate(c, _bursts(c, knock_times * sr, knock_amps, decay_s=0.0005), modes)

    hold = c.tones(c.cycles(unit["hold_hz"]), [1], [1.0])  # servo holding-current hum
    x = (
        _db(unit["drive_level_db"]) * drive
        + _db(unit["friction_db"]) * friction
        + _db(unit["knock_db"] + SLIDER_KNOCK_DB) * knocks * c.per_second
    )
    x += _db(unit["hold_db"]) * hold

    if kind == "rail_damage":
        # a dent in the rail: a click each time the carriage rolls over it, harder at speed
        position = np.cumsum(velocity)
        position = (position - position.min()) / max(float(np.ptp(position)), 1e-9)
        crossings = np.nonzero(np.diff(np.sign(position - unit["dent_pos"])) != 0)[0]
        amps = speed[crossings] * np.exp(0.3 * rng.standard_normal(len(crossings)))
        clicks = _resonate(c, _bursts(c, crossings.astype(float), amps, decay_s=0.001), unit["dent_modes"])
        x += _db(unit["knock_db"] + SLIDER_KNOCK_DB + SLIDER_SEVERITY["dent_db"]) * s * clicks * c.per_second
    elif kind == "dry_friction":
        # stick-slip squeal on a dry rail, in some strokes
        gate = _episodes(c, mean_on_s=period * 0.6, mean_off_s=period * 0.6, ramp_s=0.03) * moving
        squeal_hz = np.minimum(
            unit["squeal_hz"] * (1.0 + c.wander(0.015, 6.0)) * (1.0 + 0.02 * speed), c.f_max
        )
        x += _db(SLIDER_SEVERITY["squeal_db"]) * s * c.tones(c.cycles(squeal_hz), [1], [1.0]) * gate * speed
    return x


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


# --------------------------------------------------------------------------------------------------
# Valve: open/close transients in a duty cycle, flow noise while open


VALVE_SEVERITY = {
    "skip_prob": 0.4,
    "timing_jitter": 0.1,  # of the period
    "leak_db": -23.0,  # re the open-flow level
    "bounce": 1.5,
    "stick_delay_s": 0.04,
    "stick_attack": 3.0,
    "stick_click": 0.15,  # relative loss of the opening click
    "stick_flow": 0.1,  # relative loss of flow (partial opening)
}
VALVE_BOUNCE_RATIOS = (0.7, 0.5, 0.35, 0.25)  # successive plunger bounces, re the main click
VALVE_EVENT_JITTER_S = 0.004
VALVE_PULSES = 2  # the model's duty cycle: two openings per cycle, then a rest
VALVE_CLOSE_WEIGHTS = np.array([0.7, 1.1, 0.6])  # the closing hit excites the modes differently
VALVE_BODY = ((1500.0, 4.0, 0.3), (4200.0, 4.0, 0.3))
VALVE_BUZZ_HZ = 100.0  # an AC solenoid hums at twice the line frequency while energized
VALVE_CLICK_DB = -30.0  # one click re the flow noise
VALVE_PERIOD_STD = 0.01  # relative, from clip to clip
VALVE_OPEN_STD = 0.02  # relative, from opening to opening


def _valve_unit(rng: np.random.Generator) -> Unit:
    """One solenoid valve of the model in its duty cycle: timing, click modes and flow a little from nominal."""
    return {
        "period_s": _near(rng, 0.95, 0.08),
        "pulses": VALVE_PULSES,
        "open_frac": (0.4 + rng.uniform(-0.06, 0.06)) / VALVE_PULSES,
        "gap_frac": 0.12 + rng.uniform(-0.03, 0.03),
        "click_modes": _modes_near(
            rng, [(2100.0, 0.005, 1.0), (4000.0, 0.0035, 0.8), (460.0, 0.01, 0.8)], 0.08
        ),
        "close_weights": VALVE_CLOSE_WEIGHTS * np.exp(rng.uniform(-0.2, 0.2, 3)),
        "close_db": -3.0 + rng.uniform(-1.5, 1.5),
        "flow_peak": (_near(rng, 2000.0, 0.12), 9.0 + rng.uniform(-1.5, 1.5), 0.85),
        "flow_db": -3.0 + rng.uniform(-1.5, 1.5),
        "attack_s": _near(rng, 0.018, 0.25),
        "release_s": _near(rng, 0.01, 0.25),
        "buzz_db": -25.0 + rng.uniform(-3.0, 3.0),
        "body": _peaks_near(rng, VALVE_BODY, 0.08, 1.5),
        "gain_db": rng.uniform(-1.0, 1.0),
        "leak_hz": _near(rng, 4500.0, 0.15),
    }


def _valve(c: _Clip, unit: Unit, kind: str | None, s: float) -> np.ndarray:
    """A solenoid-valve clip: clicks and flow in the unit's duty cycle; fault `kind` of strength `s`."""
    rng = c.rng
    sr = c.sr
    period = unit["period_s"] * (1.0 + VALVE_PERIOD_STD * rng.standard_normal())
    irregular = s if kind == "irregular" else 0.0
    sticking = s if kind == "sticking" else 0.0
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
            if not (kind == "irregular" and rng.random() < VALVE_SEVERITY["skip_prob"] * irregular):
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
    close_amp = _db(unit["close_db"]) * np.exp(0.1 * rng.standard_normal(len(closes_a)))
    open_t_all, open_a_all, close_t_all, close_a_all = opens_a, open_amp, closes_a, close_amp
    if kind == "chatter":
        # the plunger bounces off its seat and stop: quick repeated clicks after each transition
        bounces = []
        for times, amps in ((opens_a, open_amp), (closes_a, close_amp)):
            delay = np.zeros(len(times))
            extra_t, extra_a = [times], [amps]
            for ratio in VALVE_BOUNCE_RATIOS:
                delay = delay + rng.uniform(0.012, 0.04, len(times))
                extra_t.append(times + delay)
                extra_a.append(
                    amps * ratio * VALVE_SEVERITY["bounce"] * s * rng.uniform(0.5, 1.0, len(times))
                )
            bounces.append((np.concatenate(extra_t), np.concatenate(extra_a)))
        (open_t_all, open_a_all), (close_t_all, close_a_all) = bounces
    open_exc = _bursts(c, open_t_all * sr, open_a_all, decay_s=0.0003)
    close_exc = _bursts(c, close_t_all * sr, close_a_all, decay_s=0.0003)
    clicks = np.zeros(c.n)
    for (freq, decay_s, weight), close_weight in zip(unit["click_modes"], unit["close_weights"], strict=True):
        clicks += weight * _ring(c, open_exc + close_weight * close_exc, freq, decay_s)

    valve_open = np.zeros(c.n)
    for o, cl in zip(opens_a, closes_a, strict=True):
        valve_open[max(0, int(o * sr)) : max(0, int(cl * sr))] = 1.0
    attack_s = unit["attack_s"] * (1.0 + VALVE_SEVERITY["stick_attack"] * sticking)
    flow_gate = _attack_release(valve_open, sr, attack_s, unit["release_s"]) * (
        1.0 - VALVE_SEVERITY["stick_flow"] * sticking
    )
    centre, gain, width = unit["flow_peak"]
    body = _jitter_peaks(c, unit["body"], 0.01)
    flow_env = c.envelope(
        peaks=[(centre * (1.0 + 0.02 * rng.standard_normal()), gain, width), *body],
        low_hz=300.0,
        high_hz=7500.0,
    )
    flow_noise = c.noise(flow_env)
    buzz = c.tones(c.cycles(VALVE_BUZZ_HZ), [1, 2, 3], [1.0, 0.6, 0.3]) * _smooth(coil, int(0.005 * sr))

    x = (
        _db(VALVE_CLICK_DB) * clicks * c.per_second
        + _db(unit["flow_db"] + 0.5 * rng.standard_normal()) * flow_noise * flow_gate
    )
    x += _db(unit["buzz_db"]) * buzz
    if kind == "seat_leak":
        # a worn seat lets fluid through while closed: hiss, and a whistle at the leak path
        whistle = c.noise(c.envelope(peaks=[(min(unit["leak_hz"], c.f_max), 25.0, 0.05)]))
        x += (
            _db(unit["flow_db"] + VALVE_SEVERITY["leak_db"])
            * s
            * (flow_noise + 0.5 * whistle)
            * (1.0 - flow_gate)
        )
    return x


def _attack_release(gate: np.ndarray, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    """Smooth a 0/1 gate: exponential rise with `attack_s` while open, exponential fall with `release_s` after."""
    a_up = math.exp(-1.0 / (attack_s * sr))
    a_down = math.exp(-1.0 / (release_s * sr))
    rise = signal.lfilter([1.0 - a_up], [1.0, -a_up], gate)
    fall = signal.lfilter([1.0 - a_down], [1.0, -a_down], gate)
    return np.where(gate > 0, rise, np.minimum(fall, rise))


# --------------------------------------------------------------------------------------------------
# Factory background


def _background(c: _Clip) -> np.ndarray:
    """Factory ambience: coloured noise with room modes, a distant machine's hum, occasional far impacts."""
    rng = c.rng
    peaks = [
        (float(_log_uniform(rng, 80.0, 2500.0)), rng.uniform(1.0, 5.0), rng.uniform(0.5, 1.2))
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
    hum = _unit_rms(c.tones(c.cycles(hum_f0 * (1.0 + c.wander(0.002, 0.5))), orders, hum_amps))
    bg = bg + _db(rng.uniform(-18.0, -8.0)) * hum

    count = rng.poisson(rng.uniform(0.0, 0.3) * c.duration)
    if count:
        times = rng.uniform(0.0, c.duration, count)
        exc = _bursts(c, times * c.sr, _log_uniform(rng, 0.3, 1.0, count), decay_s=0.002)
        modes = _modes(rng, [(80.0, 400.0, 0.03, 1.0), (400.0, 1500.0, 0.01, 0.5)])
        bg = bg + _db(rng.uniform(-16.0, -4.0)) * _resonate(c, exc, modes) * c.per_second
    return _unit_rms(bg)


# --------------------------------------------------------------------------------------------------
# Clips

_UNIT_DRAW = {"fan": _fan_unit, "pump": _pump_unit, "slider": _slider_unit, "valve": _valve_unit}
_MACHINE = {"fan": _fan, "pump": _pump, "slider": _slider, "valve": _valve}
# RMS of each model's normal output, measured over units and seeds (fan and pump normalize themselves;
# slider and valve keep their event energies absolute, so that missing or extra events change the level).
_TYPE_RMS = {"fan": 1.0, "pump": 1.0, "slider": _db(1.1), "valve": _db(-7.3)}
_UNIT_CACHE: dict[tuple[int, str, int], Unit] = {}
_UNIT_CACHE_SIZE = 256


def _unit(seed: int, machine_type: str, machine_id: int) -> Unit:
    """The physical parameters of one machine: a function of (seed, type, id) only."""
    key = (seed, machine_type, machine_id)
    if key not in _UNIT_CACHE:
        if len(_UNIT_CACHE) >= _UNIT_CACHE_SIZE:
            _UNIT_CACHE.clear()
        entropy = [seed, _TAG_UNIT, MACHINE_TYPES.index(machine_type), machine_id]
        _UNIT_CACHE[key] = _UNIT_DRAW[machine_type](np.random.default_rng(np.random.SeedSequence(entropy)))
    return _UNIT_CACHE[key]


def _clip_rng(
    seed: int, machine_type: str, machine_id: int, split: str, label: str, index: int
) -> np.random.Generator:
    entropy = [
        seed,
        _TAG_CLIP,
        MACHINE_TYPES.index(machine_type),
        machine_id,
        SPLITS.index(split),
        LABELS.index(label),
        index,
    ]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def synthesize_clip(
    machine_type: str,
    machine_id: int,
    label: str = "normal",
    *,
    seed: int = 0,
    split: str = "test",
    index: int = 0,
    config: SynthConfig | None = None,
    anomaly_kind: str | None = None,
) -> np.ndarray:
    """One clip in memory, float32 in [-1, 1]: exactly the samples `generate` writes for the same arguments.

    Args:
        machine_type: one of `MACHINE_TYPES`.
        machine_id: the unit, e.g. 0, 2, 4, 6 (any integer 0..99 works; `generate` uses even ones).
        label: ``normal`` or ``anomaly``.
        seed: the data set seed; with (type, id) it fixes the unit, with everything else the clip.
        split: ``train`` or ``test``; part of the clip's random stream only.
        index: clip number within (type, id, split, label).
        config: duration, sample rate, SNR and severity (default: `SynthConfig()`).
        anomaly_kind: force this fault (an anomaly clip otherwise cycles through the type's kinds by index).
    """
    config = SynthConfig() if config is None else config
    if machine_type not in MACHINE_TYPES:
        msg = f"machine_type must be one of {MACHINE_TYPES}, got {machine_type!r}"
        raise ValueError(msg)
    if not _is_int(machine_id) or not 0 <= machine_id <= 99:
        msg = f"machine_id must be an integer in 0..99, got {machine_id!r}"
        raise ValueError(msg)
    if label not in LABELS:
        msg = f"label must be one of {LABELS}, got {label!r}"
        raise ValueError(msg)
    if split not in SPLITS:
        msg = f"split must be one of {SPLITS}, got {split!r}"
        raise ValueError(msg)
    if split == "train" and label != "normal":
        msg = f"the train split holds only normal clips, got label={label!r}"
        raise ValueError(msg)
    if not _is_int(seed) or seed < 0 or not _is_int(index) or index < 0:
        msg = f"seed and index must be non-negative integers, got seed={seed!r}, index={index!r}"
        raise ValueError(msg)
    if anomaly_kind is not None and (label != "anomaly" or anomaly_kind not in ANOMALY_KINDS[machine_type]):
        msg = f"anomaly_kind for an anomaly clip of {machine_type!r} must be one of {ANOMALY_KINDS[machine_type]}, got {anomaly_kind!r} (label={label!r})"
        raise ValueError(msg)
    if label == "anomaly" and anomaly_kind is None and not config.kinds_for(machine_type):
        msg = f"config.anomaly_kinds={config.anomaly_kinds!r} has no kind for {machine_type!r}"
        raise ValueError(msg)
    return _synthesize(
        machine_type, int(machine_id), label, int(seed), split, int(index), config, anomaly_kind
    )


def _synthesize(
    machine_type: str,
    machine_id: int,
    label: str,
    seed: int,
    split: str,
    index: int,
    config: SynthConfig,
    anomaly_kind: str | None,
) -> np.ndarray:
    unit = _unit(seed, machine_type, machine_id)
    rng = _clip_rng(seed, machine_type, machine_id, split, label, index)
    c = _Clip(config.num_samples, config.sample_rate, rng)
    kind, severity = None, 0.0
    if label == "anomaly":
        kinds = config.kinds_for(machine_type)
        kind = anomaly_kind or kinds[(index + machine_id // ID_STEP) % len(kinds)]
        severity = config.severity * rng.uniform(*SEVERITY_SPREAD)
    snr_db = config.snr_db + rng.uniform(-CLIP_SNR_JITTER_DB, CLIP_SNR_JITTER_DB)
    gain_db = LEVEL_DBFS + unit["gain_db"] + CLIP_GAIN_STD_DB * rng.standard_normal()
    machine = _MACHINE[machine_type](c, unit, kind, severity)
    machine = machine / _TYPE_RMS[machine_type]
    mix = machine + _db(-snr_db) * _background(c)
    mix *= _db(gain_db) / math.sqrt(1.0 + _db(-snr_db) ** 2)
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:
        mix *= PEAK_LIMIT / peak
    return mix.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Writing a data set


@dataclass
class SynthSummary:
    """What `generate` wrote: per (type, id, split, label) clip counts, and how fast.

    Attributes:
        root: the output folder.
        counts: clips per (machine_type, "id_XX", split, label).
        seconds: wall time taken.
        clips_per_second: clips written per second of wall time.
        duration_s: length of each clip.
        sample_rate: Hz.
        workers: processes used.
        seed: the seed the set was made with.
    """

    root: Path
    counts: dict[tuple[str, str, str, str], int]
    seconds: float
    clips_per_second: float
    duration_s: float = 10.0
    sample_rate: int = 16000
    workers: int = 1
    seed: int = 0

    @property
    def total_clips(self) -> int:
        """All clips written."""
        return sum(self.counts.values())

    def format(self) -> str:
        """A readable table: one row per (type, id) with counts per split and label, then totals and speed."""
        columns = [("train", "normal"), ("test", "normal"), ("test", "anomaly")]
        header = ["type", "id", *(f"{s}/{lab}" for s, lab in columns)]
        rows = []
        for machine_type, machine_id in sorted({(k[0], k[1]) for k in self.counts}):
            rows.append(
                [
                    machine_type,
                    machine_id,
                    *(str(self.counts.get((machine_type, machine_id, s, lab), 0)) for s, lab in columns),
                ]
            )
        totals = [
            "total",
            "",
            *(str(sum(v for k, v in self.counts.items() if (k[2], k[3]) == col)) for col in columns),
        ]
        widths = [max(len(r[i]) for r in [header, *rows, totals]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            )

        hours = self.total_clips * self.duration_s / 3600.0
        lines = [line(header), line(["-" * w for w in widths]), *map(line, rows), line(totals), ""]
        lines.append(
            f"{self.total_clips} clips of {self.duration_s:g} s at {self.sample_rate} Hz ({hours:.2f} h of audio), seed {self.seed}, in {self.root}"
        )
        lines.append(
            f"written in {self.seconds:.1f} s with {self.workers} worker(s): {self.clips_per_second:.1f} clips/s"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    machine_type: str
    machine_id: int
    split: str
    label: str
    index: int


def _jobs(config: SynthConfig) -> list[_Job]:
    per_split = (
        ("train", "normal", config.train_per_id),
        ("test", "normal", config.test_normal_per_id),
        ("test", "anomaly", config.test_anomaly_per_id),
    )
    return [
        _Job(t, i, split, label, k)
        for t in config.machine_types
        for i in machine_ids(config)
        for split, label, count in per_split
        for k in range(count)
    ]


def _write_clip(root: str, config: SynthConfig, seed: int, job: _Job) -> None:
    """Synthesize one clip and write it as 16-bit PCM WAV atomically (temporary file, then rename)."""
    audio = _synthesize(job.machine_type, job.machine_id, job.label, seed, job.split, job.index, config, None)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * PCM_SCALE).astype(np.int16)
    folder = Path(root) / job.machine_type / job.split
    name = clip_filename(job.label, job.machine_id, job.index)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, pcm, config.sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_chunk(args: tuple[str, SynthConfig, int, list[_Job]]) -> int:
    root, config, seed, jobs = args
    for job in jobs:
        _write_clip(root, config, seed, job)
    return len(jobs)


# glibc mallopt parameters: freed arrays stay in the heap instead of going back to the OS after every clip
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_WORKER_TRIM_BYTES = 256 << 20
_WORKER_MMAP_BYTES = 32 << 20


def _init_worker() -> None:
    """Worker set-up: with glibc, keep freed memory; re-faulting fresh pages for each array doubles the time."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_TRIM_THRESHOLD, _WORKER_TRIM_BYTES)
        libc.mallopt(_M_MMAP_THRESHOLD, _WORKER_MMAP_BYTES)
    except (OSError, AttributeError):
        pass


def _auto_workers(config: SynthConfig) -> int:
    if config.total_clips * config.duration_s < AUTO_WORKERS_MIN_AUDIO_S:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


def generate(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    *,
    config: SynthConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic machine-sound data set in the DCASE 2020 layout under `out`; same seed, same bytes.

    Files with the names being written are overwritten; other files in `out` are left alone.

    Args:
        out: output folder (created if missing; must not be a file).
        preset: a name from `PRESETS`; ignored when `config` is given.
        seed: non-negative integer; fixes every unit and clip.
        config: the full configuration, overriding `preset`.
        workers: processes (None: one per core for large sets, one for small ones).
        progress: show a tqdm progress bar.
    """
    if config is None:
        if preset not in PRESETS:
            msg = f"preset must be one of {sorted(PRESETS)}, got {preset!r}"
            raise ValueError(msg)
        config = PRESETS[preset]
    elif not isinstance(config, SynthConfig):
        msg = f"config must be a SynthConfig or None, got {type(config).__name__}"
        raise ValueError(msg)
    if not _is_int(seed) or seed < 0:
        msg = f"seed must be a non-negative integer, got {seed!r}"
        raise ValueError(msg)
    if workers is not None and (not _is_int(workers) or workers < 1):
        msg = f"workers must be None or a positive integer, got {workers!r}"
        raise ValueError(msg)
    root = Path(out)
    if root.exists() and not root.is_dir():
        msg = f"out must be a folder, but {str(root)!r} is an existing file"
        raise ValueError(msg)
    for machine_type in config.machine_types:
        for split in SPLITS:
            (root / machine_type / split).mkdir(parents=True, exist_ok=True)

    jobs = _jobs(config)
    workers = _auto_workers(config) if workers is None else int(workers)
    workers = min(workers, max(1, len(jobs)))
    start = time.perf_counter()
    with tqdm(total=len(jobs), disable=not progress, unit="clip", desc="synth") as bar:
        if workers == 1:
            for job in jobs:
                _write_clip(str(root), config, int(seed), job)
                bar.update(1)
        else:
            chunk = max(1, min(8, len(jobs) // (workers * 8)))
            tasks = [(str(root), config, int(seed), jobs[i : i + chunk]) for i in range(0, len(jobs), chunk)]
            # Forked workers start at once and need no `if __name__ == "__main__"` guard in the caller's
            # script; they only run numpy and scipy code, so the parent's threads (torch, tqdm) do no harm.
            context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=_init_worker
            ) as pool:
                for done in pool.map(_write_chunk, tasks):
                    bar.update(done)
    seconds = time.perf_counter() - start

    counts: dict[tuple[str, str, str, str], int] = {}
    for job in jobs:
        key = (job.machine_type, f"id_{job.machine_id:02d}", job.split, job.label)
        counts[key] = counts.get(key, 0) + 1
    return SynthSummary(
        root=root,
        counts=counts,
        seconds=seconds,
        clips_per_second=len(jobs) / seconds if seconds > 0 else float("inf"),
        duration_s=config.duration_s,
        sample_rate=config.sample_rate,
        workers=workers,
        seed=int(seed),
    )
