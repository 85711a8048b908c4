"""One synthetic clip: a unit of a machine model, recorded in a factory the way MIMII was, from its seeds.

Rotating machines (fan, pump) are harmonic series of a shaft rate over shaped, modulated flow noise, with
motor hum; reciprocating ones (slider, valve) are event schedules whose hits excite resonances. Each machine
ID is one unit of a fixed model, its physical parameters a few per cent or dB from nominal; each clip varies
within its unit (speed and load, phases, timing). The machine is mixed, as MIMII mixed its recordings, with
a random segment of a pool of long factory ambiences at an SNR fixed per type against the mean power of the
type's clips, so each clip's own SNR varies. Anomalies are MIMII's fault families, at graded severities, each
with the time span and frequency range where its evidence lies.

Everything is reproducible: a unit's parameters come from (seed, type, id) alone, the ambience pool from the
seed alone, and a clip's random draws from (seed, type, id, split, label, index[, domain]), so the same seed
gives byte-identical files whatever the number of worker processes, and adding clips or types leaves
existing ones unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ssad.synthesis.background import background_segment
from ssad.synthesis.config import DOMAINS, ID_STEP, LABELS, SEVERITY_LEVELS, SPLITS, SynthConfig, is_int
from ssad.synthesis.domains import Condition, condition
from ssad.synthesis.machines import (
    ANOMALY_KINDS,
    MACHINE_TYPES,
    MODELS,
    PRETRAINING_TYPES,
    Evidence,
    Unit,
    retune,
)
from ssad.synthesis.signals import Clip, from_db

__all__ = ["PEAK_LIMIT", "Rendered", "render_clip", "synthesize_clip"]

LEVEL_DBFS = -34.0  # clip RMS, near the real corpus (about -39 dBFS) with headroom for impulses
PEAK_LIMIT = 10 ** (-1.0 / 20.0)  # never closer than 1 dB to full scale
CLIP_GAIN_STD_DB = 0.7  # microphone/load level variation from clip to clip
SEVERITY_JITTER = 0.1  # relative: severities spread a little round their level
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
        entropy = [seed, _TAG_UNIT, PRETRAINING_TYPES.index(machine_type), machine_id]
        _UNIT_CACHE[key] = MODELS[machine_type].draw_unit(np.random.default_rng(np.random.SeedSequence(entropy)))
    return _UNIT_CACHE[key]


def _clip_rng(
    seed: int, machine_type: str, machine_id: int, split: str, label: str, index: int, domain: str
) -> np.random.Generator:
    entropy = [
        seed,
        _TAG_CLIP,
        PRETRAINING_TYPES.index(machine_type),
        machine_id,
        SPLITS.index(split),
        LABELS.index(label),
        index,
    ]
    if domain != "source":
        entropy.append(DOMAINS.index(domain))
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass(frozen=True)
class Rendered:
    """One rendered clip: its samples and, for an anomaly, its fault family, severity and evidence."""

    audio: np.ndarray
    family: str | None = None
    severity: float = 0.0
    evidence: Evidence | None = None


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
    domain: str = "source",
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
        domain: ``source`` or ``target`` (the target's condition needs ``config.layout='dcase2022'``).
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
    if domain not in DOMAINS or (domain == "target" and config.layout != "dcase2022"):
        msg = f"domain must be one of {DOMAINS} ('target' only with layout='dcase2022'), got {domain!r}"
        raise ValueError(msg)
    if label == "anomaly" and anomaly_kind is None and not config.kinds_for(machine_type):
        msg = f"config.anomaly_kinds={config.anomaly_kinds!r} has no kind for {machine_type!r}"
        raise ValueError(msg)
    return render_clip(
        machine_type, int(machine_id), label, int(seed), split, int(index), config, anomaly_kind, domain
    ).audio


def render_clip(
    machine_type: str,
    machine_id: int,
    label: str,
    seed: int,
    split: str,
    index: int,
    config: SynthConfig,
    anomaly_kind: str | None,
    domain: str = "source",
) -> Rendered:
    """`synthesize_clip` without its argument checks, with the fault it holds, for callers whose arguments are valid."""
    model = MODELS[machine_type]
    where = condition(machine_id // ID_STEP, domain) if config.layout == "dcase2022" else Condition()
    unit = retune(model, _unit(seed, machine_type, machine_id), where.speed)
    rng = _clip_rng(seed, machine_type, machine_id, split, label, index, domain)
    c = Clip(config.num_samples, config.sample_rate, rng)
    kind, severity = None, 0.0
    if label == "anomaly":
        kinds = config.kinds_for(machine_type)
        kind = anomaly_kind or kinds[(index + machine_id // ID_STEP) % len(kinds)]
        level = SEVERITY_LEVELS[(index // len(kinds)) % len(SEVERITY_LEVELS)]
        severity = config.severity * level * (1.0 + SEVERITY_JITTER * rng.uniform(-1.0, 1.0))
    gain_db = LEVEL_DBFS + unit["gain_db"] + CLIP_GAIN_STD_DB * rng.standard_normal() + where.mic_gain_db
    machine, evidence = model.sound(c, unit, kind, severity)
    machine = machine / model.rms
    if where.mic_tilt_db_per_oct:
        machine = c.shape(machine, c.envelope(tilt_db_per_oct=where.mic_tilt_db_per_oct))
    noise = background_segment(c, seed, where.ambiences)
    mix = from_db(gain_db) * machine + from_db(LEVEL_DBFS - config.snr_db + where.background_db) * noise
    peak = float(np.max(np.abs(mix)))
    if peak > PEAK_LIMIT:
        mix *= PEAK_LIMIT / peak
    return Rendered(mix.astype(np.float32), kind, severity, evidence)
