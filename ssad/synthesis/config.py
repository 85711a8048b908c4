"""What a synthetic corpus holds: `SynthConfig`, the presets, and the DCASE 2020 naming of IDs and files."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ssad.synthesis.machines import ANOMALY_KINDS, MACHINE_TYPES

__all__ = [
    "DOMAINS",
    "ID_STEP",
    "LABELS",
    "LAYOUTS",
    "SEVERITY_LEVELS",
    "PRESETS",
    "SPLITS",
    "SynthConfig",
    "clip_filename",
    "section_filename",
    "is_int",
    "is_real",
    "machine_ids",
]

SPLITS: tuple[str, ...] = ("train", "test")
LABELS: tuple[str, ...] = ("normal", "anomaly")
DOMAINS: tuple[str, ...] = ("source", "target")
LAYOUTS: tuple[str, ...] = ("dcase2020", "dcase2022")
# Anomalous clips cycle through these fractions of the configured severity: subtle, moderate, strong faults.
SEVERITY_LEVELS: tuple[float, ...] = (0.4, 0.7, 1.0)

# DCASE 2020 numbers the IDs of a type 00, 02, 04, 06 (odd ones were held out for evaluation).
ID_STEP = 2
MAX_IDS_PER_TYPE = 50  # IDs stay two digits
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 96000
MIN_DURATION_S = 0.1
MAX_DURATION_S = 600.0
SNR_RANGE_DB = (-30.0, 60.0)
SEVERITY_RANGE = (0.0, 2.0)


def is_int(value: object) -> bool:
    """An integer of any kind, but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A finite real number of any kind, but not a bool."""
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
        snr_db: machine-to-background power ratio, fixed per type against the mean power of its clips,
            as MIMII mixed it (-6, 0 or +6 dB there); each clip's own SNR varies with its background segment.
        severity: anomaly strength: 0 = no fault, 1 = the default, 2 at most; anomalous clips cycle
            through `SEVERITY_LEVELS` of it.
        anomaly_kinds: restrict anomalies to these fault families (None: all of each type, see
            `ANOMALY_KINDS`); every selected type must keep at least one.
        layout: ``dcase2020`` (``normal_id_00_...``) or ``dcase2022`` (sections, source and target
            domains, attribute tables).
        target_train_per_id: normal training clips per section in the target domain (dcase2022 only).
        target_test_per_id: normal and anomalous test clips, each, per section in the target domain.
    """

    machine_types: tuple[str, ...] = MACHINE_TYPES
    ids_per_type: int = 4
    train_per_id: int = 30
    test_normal_per_id: int = 15
    test_anomaly_per_id: int = 15
    duration_s: float = 10.0
    sample_rate: int = 16000
    snr_db: float = 0.0
    severity: float = 1.0
    anomaly_kinds: tuple[str, ...] | None = None
    layout: str = "dcase2020"
    target_train_per_id: int = 0
    target_test_per_id: int = 0

    def __post_init__(self) -> None:
        types = tuple(self.machine_types)
        unknown = [t for t in types if t not in MACHINE_TYPES]
        if not types or unknown or len(set(types)) != len(types):
            msg = f"machine_types must be distinct names from {MACHINE_TYPES}, got {self.machine_types!r}"
            raise ValueError(msg)
        object.__setattr__(self, "machine_types", types)
        if not is_int(self.ids_per_type) or not 1 <= self.ids_per_type <= MAX_IDS_PER_TYPE:
            msg = f"ids_per_type must be an integer in 1..{MAX_IDS_PER_TYPE}, got {self.ids_per_type!r}"
            raise ValueError(msg)
        if self.layout not in LAYOUTS:
            msg = f"layout must be one of {LAYOUTS}, got {self.layout!r}"
            raise ValueError(msg)
        if self.layout == "dcase2020" and (self.target_train_per_id or self.target_test_per_id):
            msg = "target-domain clips need layout='dcase2022'"
            raise ValueError(msg)
        for name in ("train_per_id", "test_normal_per_id", "test_anomaly_per_id", "target_train_per_id", "target_test_per_id"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                msg = f"{name} must be a non-negative integer, got {value!r}"
                raise ValueError(msg)
        if self.train_per_id + self.test_normal_per_id + self.test_anomaly_per_id == 0:
            msg = "train_per_id, test_normal_per_id and test_anomaly_per_id are all 0: nothing to synthesize"
            raise ValueError(msg)
        if not is_real(self.duration_s) or not MIN_DURATION_S <= self.duration_s <= MAX_DURATION_S:
            msg = f"duration_s must be in [{MIN_DURATION_S}, {MAX_DURATION_S}] s, got {self.duration_s!r}"
            raise ValueError(msg)
        if not is_int(self.sample_rate) or not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            msg = f"sample_rate must be an integer in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {self.sample_rate!r}"
            raise ValueError(msg)

        if not is_real(self.snr_db) or not SNR_RANGE_DB[0] <= self.snr_db <= SNR_RANGE_DB[1]:
            msg = f"snr_db must be in [{SNR_RANGE_DB[0]}, {SNR_RANGE_DB[1]}] dB, got {self.snr_db!r}"
            raise ValueError(msg)
        if not is_real(self.severity) or not SEVERITY_RANGE[0] <= self.severity <= SEVERITY_RANGE[1]:
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
        per_id += self.target_train_per_id + 2 * self.target_test_per_id
        return len(self.machine_types) * self.ids_per_type * per_id


PRESETS: dict[str, SynthConfig] = {
    # For tests: every type and ID, short clips, generated in a few seconds.
    "tiny": SynthConfig(duration_s=2.0, train_per_id=6, test_normal_per_id=3, test_anomaly_per_id=3),
    # The embedded default set: 4 types x 4 IDs x (30 train + 15 + 15 test) = 960 clips of 10 s.
    "default": SynthConfig(),
    # Domain shift as in DCASE 2022-2024: 4 sections per type, each with a target domain (another speed,
    # microphone position or background) that has 3 training clips; 10 + 10 test clips per domain.
    "shift": SynthConfig(layout="dcase2022", test_normal_per_id=10, test_anomaly_per_id=10,
                         target_train_per_id=3, target_test_per_id=10),
}


def machine_ids(config: SynthConfig) -> tuple[int, ...]:
    """The machine ID numbers of each type: 0, 2, 4, ... as in DCASE 2020."""
    return tuple(ID_STEP * k for k in range(config.ids_per_type))


def clip_filename(label: str, machine_id: int, index: int) -> str:
    """DCASE 2020 file name, e.g. ``anomaly_id_02_00000007.wav``."""
    return f"{label}_id_{machine_id:02d}_{index:08d}.wav"


def section_filename(section: int, domain: str, split: str, label: str, index: int, attributes: str) -> str:
    """DCASE 2022-2024 file name, e.g. ``section_01_target_test_anomaly_0003_speed_108_mic_A_noise_A.wav``."""
    return f"section_{section:02d}_{domain}_{split}_{label}_{index:04d}_{attributes}.wav"
