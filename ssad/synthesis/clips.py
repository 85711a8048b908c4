"""One synthetic clip: a unit of a machine model in a factory background, at a set level, from its seeds.

Rotating machines (fan, pump) are harmonic series of a drifting shaft rate over shaped, modulated flow
noise; reciprocating ones (slider, valve) are event schedules whose hits excite resonances. Each machine
ID is one unit of a fixed model, its physical parameters a few per cent or dB from nominal; each clip
varies within its unit (speed and load drift, phases, timing, factory background at a set SNR).
Anomalies are faults whose evidence is largely temporal (impulse trains, modulation, bursts, irregular
timing), so that a plain long-term average spectrum finds them only in part; an anomalous clip's fault
cycles through its type's kinds (`ANOMALY_KINDS`) with the clip index, so every kind is equally represented.

Everything is reproducible: a unit's parameters come from (seed, type, id) alone and a clip's random
draws from (seed, type, id, split, label, index), so the same seed gives byte-identical files whatever
the number of worker processes, and adding clips or types leaves existing ones unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ssad.synthesis.background import background
from ssad.synthesis.config import ID_STEP, LABELS, SPLITS, SynthConfig, is_int
from ssad.synthesis.machines import ANOMALY_KINDS, MACHINE_TYPES, MODELS, Unit
from ssad.synthesis.signals import Clip, from_db

__all__ = ["PEAK_LIMIT", "render_clip", "synthesize_clip"]

LEVEL_DBFS = -34.0  # clip RMS, near the real corpus (about -39 dBFS) with headroom for impulses
PEAK_LIMIT = 10 ** (-1.0 / 20.0)  # never closer than 1 dB to full scale
CLIP_GAIN_STD_DB = 0.7  # microphone/load level variation from clip to clip
CLIP_SNR_JITTER_DB = 1.5  # background level varies around the configured SNR
SEVERITY_SPREAD = (0.5, 1.5)  # each anomalous clip's severity is the configured one times this range
# Seed-sequence domain tags, so unit and clip streams can never coincide.
_TAG_UNIT = 1
_TAG_CLIP = 2

_UNIT_CACHE: dict[tuple[int, str, int], Unit] = {}
_UNIT_CACHE_SIZE = 256


def _unit(seed: int, machine_type: str, machine_id: int) -> Unit:
    """The physical parameters of one machine: a function of (seed, type, id) only."""
    key = (seed, machine_type, machine_id)
    if key not in _UNIT_CACHE:
        if len(_UNIT_CACHE) >= _UNIT_CACHE_SIZE:
            _UNIT_CACHE.clear()
        entropy = [seed, _TAG_UNIT, MACHINE_TYPES.index(machine_type), machine_id]
        _UNIT_CACHE[key] = MODELS[machine_type].draw_unit(np.random.default_rng(np.random.SeedSequence(entropy)))
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
    if not is_int(machine_id) or not 0 <= machine_id <= 99:
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
    if not is_int(seed) or seed < 0 or not is_int(index) or index < 0:
        msg = f"seed and index must be non-negative integers, got seed={seed!r}, index={index!r}"
        raise ValueError(msg)
    if anomaly_kind is not None and (label != "anomaly" or anomaly_kind not in ANOMALY_KINDS[machine_type]):
        msg = f"anomaly_kind for an anomaly clip of {machine_type!r} must be one of {ANOMALY_KINDS[machine_type]}, got {anomaly_kind!r} (label={label!r})"
        raise ValueError(msg)
    if label == "anomaly" and anomaly_kind is None and not config.kinds_for(machine_type):
        msg = f"config.anomaly_kinds={config.anomaly_kinds!r} has no kind for {machine_type!r}"
        raise ValueError(msg)
    return render_clip(
        machine_type, int(machine_id), label, int(seed), split, int(index), config, anomaly_kind
    )


def render_clip(
    machine_type: str,
    machine_id: int,
    label: str,
    seed: int,
    split: str,
    index: int,
    config: SynthConfig,
    anomaly_kind: str | None,
) -> np.ndarray:
    """`synthesize_clip` without its argument checks, for callers whose arguments are already valid."""
    unit = _unit(seed, machine_type, machine_id)
    rng = _clip_rng(seed, machine_type, machine_id, split, label, index)
    c = Clip(config.num_samples, config.sample_rate, rng)
    kind, severity = None, 0.0
    if label == "anomaly":
        kinds = config.kinds_for(machine_type)
        kind = anomaly_kind or kinds[(index + machine_id // ID_STEP) % len(kinds)]
        severity = config.severity * rng.uniform(*SEVERITY_SPREAD)
    snr_db = config.snr_db + rng.uniform(-CLIP_SNR_JITTER_DB, CLIP_SNR_JITTER_DB)
    gain_db = LEVEL_DBFS + unit["gain_db"] + CLIP_GAIN_STD_DB * rng.standard_normal()
    model = MODELS[machine_type]
    machine = model.sound(c, unit, kind, severity)
    machine = machine / model.rms
    mix = machine + from_db(-snr_db) * background(c)
    mix *= from_db(gain_db) / math.sqrt(1.0 + from_db(-snr_db) ** 2)
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:
        mix *= PEAK_LIMIT / peak
    return mix.astype(np.float32)


