"""Pretraining data: a synthetic corpus larger than one wants on disk, rendered shard by shard into memory.

The corpus is many units of every machine type, each recorded at -6, 0 or +6 dB against the factory
background and sometimes in its section's shifted condition (another speed, microphone place or background,
as in the domain-shift preset). Every clip is a function of the corpus seed and its coordinates, so a shard
rendered again is the same audio: epochs cycle through the shards, and a resumed run sees what it would have.
Nothing is written to disk; only the shard in use (and a small validation set) is held in memory.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssad.audio.clips import machine_key
from ssad.core.runtime import available_cores, tune_allocator
from ssad.data.machine_ids import MachineIDDataModule, _augmenter, _ClipDataset, _CropDataset
from ssad.synthesis.background import ambience_pool
from ssad.synthesis.clips import render_clip
from ssad.synthesis.config import ID_STEP, MAX_IDS_PER_TYPE, SynthConfig
from ssad.synthesis.machines import MACHINE_TYPES, PRETRAINING_TYPES
from ssad.synthesis.signals import response_db

__all__ = ["CorpusPlan", "SynthCorpusDataModule", "render_jobs"]

log = logging.getLogger("ssad")

_VALIDATION_OFFSET = 1_000_000  # validation clips' indices: never those of a training shard


@dataclass(frozen=True)
class Job:
    """One clip of the corpus: which unit, which clip of it, at what SNR and in which domain."""

    machine_type: str
    machine_id: int
    index: int
    snr_db: float
    domain: str

    @property
    def class_name(self) -> str:
        return machine_key(self.machine_type, f"id_{self.machine_id:02d}")


@dataclass(frozen=True)
class CorpusPlan:
    """What the corpus holds: units per type, clips per unit in shards, SNRs and the share of shifted clips."""

    seed: int = 1000
    machine_types: tuple[str, ...] = MACHINE_TYPES
    units_per_type: int = 16
    clips_per_unit: int = 64
    shards: int = 4
    snr_db: tuple[float, ...] = (-6.0, 0.0, 6.0)
    target_share: float = 0.25
    validation_per_unit: int = 2
    duration_s: float = 10.0
    sample_rate: int = 16000
    recording_eq: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.machine_types) - set(PRETRAINING_TYPES))
        if unknown or not self.machine_types:
            raise ValueError(f"machine_types must be names from {PRETRAINING_TYPES}, got {list(self.machine_types)}")
        if self.recording_eq < 0:
            raise ValueError(f"recording_eq must be >= 0, got {self.recording_eq}")
        if not 1 <= self.units_per_type <= MAX_IDS_PER_TYPE:
            raise ValueError(f"units_per_type must be in 1..{MAX_IDS_PER_TYPE}, got {self.units_per_type}")
        if self.shards < 1 or self.clips_per_unit < self.shards:
            raise ValueError(f"clips_per_unit ({self.clips_per_unit}) must be at least shards ({self.shards}) >= 1")
        if not 0.0 <= self.target_share <= 1.0:
            raise ValueError(f"target_share must be in [0, 1], got {self.target_share}")
        if not self.snr_db:
            raise ValueError("snr_db needs at least one value")
        self.config(self.snr_db[0])  # a bad duration, rate or SNR fails here, not in a rendering worker

    def config(self, snr_db: float) -> SynthConfig:
        """How a clip at this SNR is rendered: the domain-shift layout, so that target-domain clips exist."""
        return SynthConfig(layout="dcase2022", snr_db=float(snr_db), duration_s=self.duration_s,
                           sample_rate=self.sample_rate)

    @property
    def class_names(self) -> list[str]:
        """Every unit, as the classifier names a machine (`fan/id_00`), sorted."""
        return sorted(Job(t, ID_STEP * k, 0, 0.0, "source").class_name
                      for t in self.machine_types for k in range(self.units_per_type))

    @property
    def total_clips(self) -> int:
        return len(self.machine_types) * self.units_per_type * self.clips_per_unit

    def _job(self, machine_type: str, machine_id: int, index: int) -> Job:
        rng = np.random.default_rng([self.seed, PRETRAINING_TYPES.index(machine_type), machine_id, index])
        snr = self.snr_db[int(rng.integers(len(self.snr_db)))]
        domain = "target" if rng.random() < self.target_share else "source"
        return Job(machine_type, machine_id, index, float(snr), domain)

    def _jobs(self, indices: Sequence[int]) -> list[Job]:
        return [self._job(t, ID_STEP * k, i) for t in self.machine_types for k in range(self.units_per_type)
                for i in indices]

    def shard(self, number: int) -> list[Job]:
        """The clips of shard `number`: an equal slice of every unit's clips."""
        bounds = np.linspace(0, self.clips_per_unit, self.shards + 1).astype(int)
        return self._jobs(range(bounds[number], bounds[number + 1]))

    def validation(self) -> list[Job]:
        """Held-out clips of every unit, for validation accuracy: never part of a shard."""
        return self._jobs(range(_VALIDATION_OFFSET, _VALIDATION_OFFSET + self.validation_per_unit))

    def describe(self) -> dict:
        """The plan as plain data, for logs and the shipped encoder's provenance."""
        plan = asdict(self)
        plan.update(total_clips=self.total_clips, hours=round(self.total_clips * self.duration_s / 3600, 2))
        return plan


_PLAN: CorpusPlan | None = None  # the plan the worker processes render from (set before they fork)


#: a recording's colouring at `recording_eq` 1: the microphone's tilt (dB/octave) and its place's two peaks or dips
EQ_TILT_STD, EQ_PEAK_STD_DB = 1.0, 4.0
_EQ_TAG = 7  # the colouring's random stream, apart from the job's own


def recorded(audio: np.ndarray, plan: CorpusPlan, job: Job) -> np.ndarray:
    """The clip as another microphone in another place would record it: a random smooth colouring of its spectrum
    drawn per clip (`plan.recording_eq` scales it; 0 leaves the clip as rendered), so that one unit's recordings
    differ as real recording days do and the encoder learns what stays the same."""
    if plan.recording_eq == 0:
        return audio
    rng = np.random.default_rng([plan.seed, _EQ_TAG, PRETRAINING_TYPES.index(job.machine_type), job.machine_id,
                                 job.index])
    scale = plan.recording_eq
    peaks = [(float(np.exp(rng.uniform(np.log(150.0), np.log(6000.0)))), float(rng.normal(0.0, EQ_PEAK_STD_DB * scale)),
              float(rng.uniform(0.3, 1.2))) for _ in range(2)]
    freqs = np.fft.rfftfreq(len(audio), 1.0 / plan.sample_rate)
    gain = 10.0 ** (response_db(freqs, tilt_db_per_oct=float(rng.normal(0.0, EQ_TILT_STD * scale)), peaks=peaks) / 20.0)
    out = np.fft.irfft(np.fft.rfft(audio) * gain, len(audio))
    out *= float(np.sqrt(np.mean(audio.astype(np.float64) ** 2) / max(np.mean(out ** 2), 1e-20)))
    return out.astype(np.float32)


def _render(job: Job) -> np.ndarray:
    assert _PLAN is not None
    audio = render_clip(job.machine_type, job.machine_id, "normal", _PLAN.seed, "train", job.index,
                        _PLAN.config(job.snr_db), None, job.domain).audio
    return recorded(audio, _PLAN, job)


def render_jobs(plan: CorpusPlan, jobs: Sequence[Job], workers: int | None = None, desc: str = "rendering") -> list[np.ndarray]:
    """The jobs' audio, in order, rendered by `workers` processes (None: one per core)."""
    global _PLAN
    _PLAN = plan
    ambience_pool(plan.seed, plan.sample_rate)  # once here, before the workers fork, instead of once in each
    workers = max(1, min(available_cores() if workers is None else workers, len(jobs)))
    with tqdm(total=len(jobs), unit="clip", desc=desc) as bar:
        if workers == 1:
            waves = []
            for job in jobs:
                waves.append(_render(job))
                bar.update(1)
            return waves
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=tune_allocator) as pool:
            waves = []
            for wave in pool.map(_render, jobs, chunksize=8):
                waves.append(wave)
                bar.update(1)
            return waves


class SynthCorpusDataModule(MachineIDDataModule):
    """Machine-ID training on a large synthetic corpus rendered shard by shard: what `make pretrain` trains on.

    Every unit is a class, plus warped and mixed instances as in `MachineIDDataModule`, whose arguments of
    the same names (from `n_warped` on) mean what they mean there. Epoch `e` trains on shard
    `(e // epochs_per_shard) % shards`, so the trainer must reload data loaders every epoch
    (`reload_dataloaders_every_n_epochs: 1`).

    Args:
        corpus_seed: fixes every unit and clip (keep it apart from the seeds of the sets you evaluate on).
        machine_types: types in the corpus ("all": every type the synthesizer has).
        units_per_type: units (classes) of each type.
        clips_per_unit: clips of each unit over all shards.
        shards: how many slices the corpus is rendered in; one is in memory at a time.
        epochs_per_shard: epochs each shard is trained on before the next is rendered.
        snr_db: machine-to-background ratios a clip draws from.
        target_share: share of clips recorded in their section's shifted condition.
        validation_per_unit: held-out clips per unit for validation accuracy.
        render_workers: processes that render audio (None: one per core).
        duration_s: length of every clip.
        recording_eq: how strongly each clip is coloured as another microphone and place would (0: not at all).
    """

    def __init__(
        self,
        corpus_seed: int = 1000,
        machine_types: list[str] | str = "all",
        units_per_type: int = 16,
        clips_per_unit: int = 64,
        shards: int = 4,
        epochs_per_shard: int = 6,
        snr_db: list[float] | None = None,
        target_share: float = 0.25,
        validation_per_unit: int = 2,
        render_workers: int | None = None,
        duration_s: float = 10.0,
        recording_eq: float = 0.0,
        n_warped: int = 0,
        n_mixed: int = 0,
        n_temporal: int = 0,
        n_equalized: int = 0,
        warp_range: tuple[float, float] = (0.8, 1.25),
        min_warp: float = 0.04,
        mix_ratio_range: tuple[float, float] = (0.3, 0.7),
        mix_within_type: bool = True,
        crop_frames: int = 64,
        crop_views: int = 1,
        features: dict | None = None,
        batch_size: int = 64,
        augment: bool = False,
        heavy_augment: bool = False,
        examples_per_class: int | None = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if epochs_per_shard < 1:
            raise ValueError(f"epochs_per_shard must be >= 1, got {epochs_per_shard}")
        super().__init__(
            root="", machine_types=machine_types, n_warped=n_warped, n_mixed=n_mixed, n_temporal=n_temporal,
            n_equalized=n_equalized, warp_range=warp_range, min_warp=min_warp, mix_ratio_range=mix_ratio_range,
            mix_within_type=mix_within_type, crop_frames=crop_frames, crop_views=crop_views, features=features, batch_size=batch_size,
            augment=augment, heavy_augment=heavy_augment, examples_per_class=examples_per_class,
            num_workers=num_workers, seed=seed,
        )
        types = tuple(MACHINE_TYPES if machine_types in ("all", ["all"]) else
                      ([machine_types] if isinstance(machine_types, str) else machine_types))
        self.plan = CorpusPlan(
            seed=corpus_seed, machine_types=types, units_per_type=units_per_type, clips_per_unit=clips_per_unit,
            shards=shards, snr_db=tuple(snr_db or (-6.0, 0.0, 6.0)), target_share=target_share,
            validation_per_unit=validation_per_unit, duration_s=duration_s, sample_rate=self.log_mel.sample_rate,
            recording_eq=recording_eq,
        )
        self._shard: int | None = None

    @property
    def num_clips(self) -> int:
        """0: recordings change from shard to shard, so a clip-instance head has no fixed index space."""
        return 0

    def setup(self, stage: str | None = None) -> None:
        if self._val is not None:
            return
        trainer = getattr(self, "trainer", None)
        if self.plan.shards > 1 and trainer is not None and trainer.reload_dataloaders_every_n_epochs != 1:
            raise ValueError("SynthCorpusDataModule with several shards needs the trainer's "
                             "reload_dataloaders_every_n_epochs: 1 (see configs/pretrain.yaml)")
        names = self.plan.class_names
        self._plan_classes(names)
        log.info("pretraining corpus: %s", self.plan.describe())
        jobs = self.plan.validation()
        waves = render_jobs(self.plan, jobs, self.hparams.render_workers, "validation clips")
        self._val = _ClipDataset(waves, [names.index(j.class_name) for j in jobs])
        # the training shard is rendered by `train_dataloader`, once a resumed run knows its epoch

    def _shard_of(self, epoch: int) -> int:
        return (epoch // self.hparams.epochs_per_shard) % self.plan.shards

    def _load_shard(self, number: int) -> None:
        """Render shard `number` and make it the training set (the previous shard is let go first)."""
        hp = self.hparams
        self._train = None
        start = time.perf_counter()
        jobs = self.plan.shard(number)
        waves = render_jobs(self.plan, jobs, hp.render_workers, f"shard {number + 1}/{self.plan.shards}")
        names = self.plan.class_names
        pools: dict[int, list[int]] = {i: [] for i in range(len(names))}
        for k, job in enumerate(jobs):
            pools[names.index(job.class_name)].append(k)
        examples, summary = self._epoch_examples({label: tuple(p) for label, p in pools.items()})
        augment = _augmenter(hp.heavy_augment, self.log_mel.sample_rate) if hp.augment else None
        self._train = _CropDataset(waves, examples, self.log_mel.num_samples(hp.crop_views * hp.crop_frames),
                                   tuple(hp.mix_ratio_range), augment, self.log_mel.sample_rate, hp.seed)
        self._shard = number
        log.info("shard %d/%d: %d clips rendered in %.0f s; an epoch is %s = %d crops", number + 1, self.plan.shards,
                 len(jobs), time.perf_counter() - start, summary, len(examples))

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        number = self._shard_of(trainer.current_epoch if trainer is not None else 0)
        if number != self._shard:
            self._load_shard(number)
        return super().train_dataloader()
