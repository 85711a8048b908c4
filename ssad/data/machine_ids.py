"""The machine-ID data module: normal training clips as classes, plus synthesized machine instances."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssad.audio.clips import Clip, attribute_class, clip_key, is_synthetic_class, machine_type_of
from ssad.audio.header_check import check_class_names, check_training_clips
from ssad.audio.layout import index_root
from ssad.audio.reading import AudioInfo, read_clips
from ssad.data.augmentation import (
    TEMPORAL_KINDS,
    SyntheticClass,
    describe_synthetic_classes,
    equalized_count,
    equalizer_gains,
    mix_waveforms,
    plan_equalized_classes,
    plan_synthetic_classes,
    plan_temporal_classes,
    retime_waveform,
    warp_frequency,
)
from ssad.features import LogMel

__all__ = ["MachineIDDataModule", "class_name"]

log = logging.getLogger("ssad")


def class_name(clip: Clip, by_attributes: bool = False) -> str:
    """The class a real clip trains: its machine `<machine_type>/<machine_id>`, or that and its attributes."""
    return attribute_class(clip) if by_attributes else clip_key(clip)


@dataclass(frozen=True)
class _Example:
    """One training example: which class, and which clips (indices into the clip store) it draws from."""

    label: int
    pools: tuple[tuple[int, ...], ...]  # one pool for a real or warped class, two for a mixed one
    warp_factor: float = 1.0
    retime: tuple[str, float] | None = None  # a temporal class's (kind, modulation_hz)
    eq: int = -1  # an "eq" class's row in the datamodule's gain table


def _augmenter(heavy: bool, sample_rate: int):
    """Waveform augmentation: cheap gain/noise/shift always; pitch shift and time stretch only if `heavy`."""
    import audiomentations as A

    steps = [
        A.Gain(min_gain_db=-6.0, max_gain_db=6.0, p=0.5),
        A.AddGaussianSNR(min_snr_db=20.0, max_snr_db=40.0, p=0.3),
        A.Shift(min_shift=-0.5, max_shift=0.5, rollover=True, p=0.5),
    ]
    if heavy:  # ~40 ms per 10 s clip for PitchShift: off by default
        steps += [A.PitchShift(min_semitones=-1.0, max_semitones=1.0, p=0.3), A.TimeStretch(0.9, 1.1, p=0.3)]
    return A.Compose(steps)


class _CropDataset(Dataset):
    """Random crops of training clips; an item is fully determined by (seed, epoch, index)."""

    def __init__(self, waves: list[np.ndarray], examples: list[_Example], crop_samples: int,
                 mix_ratio_range: tuple[float, float], augment, sample_rate: int, seed: int,
                 random_phase: bool = False) -> None:
        self.waves = waves
        self.random_phase = random_phase
        self.examples = examples
        self.crop_samples = crop_samples
        self.mix_ratio_range = mix_ratio_range
        self.augment = augment
        self.sample_rate = sample_rate
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.examples)

    def _crop(self, rng: np.random.Generator, pool: tuple[int, ...]) -> tuple[np.ndarray, int]:
        """A random crop of a random clip of `pool`, and that clip's index."""
        clip = pool[int(rng.integers(len(pool)))]
        wave = self.waves[clip]
        if len(wave) <= self.crop_samples:  # repeated to fill the crop, from a random point of the clip
            start = int(rng.integers(len(wave))) if self.random_phase else 0
            return np.resize(np.roll(wave, -start), self.crop_samples), clip
        start = int(rng.integers(len(wave) - self.crop_samples + 1))
        return wave[start : start + self.crop_samples], clip

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        example = self.examples[index]
        wave, clip = self._crop(rng, example.pools[0])
        if len(example.pools) == 2:
            ratio = float(rng.uniform(*self.mix_ratio_range))
            wave = mix_waveforms(wave, self._crop(rng, example.pools[1])[0], ratio)
        if example.retime is not None:
            wave = retime_waveform(wave, *example.retime, self.sample_rate, rng)
        if len(example.pools) == 2 or example.warp_factor != 1.0 or example.retime is not None or example.eq >= 0:
            clip = -1  # a synthesized instance is no recording
        if self.augment is not None:
            # audiomentations draws from the global RNGs: seed them per item so that resuming is exact
            item_seed = int(rng.integers(2**31))
            random.seed(item_seed)
            np.random.seed(item_seed)
            wave = self.augment(samples=np.ascontiguousarray(wave, dtype=np.float32), sample_rate=self.sample_rate)
        return {
            "wave": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            "label": torch.tensor(example.label),
            "warp": torch.tensor(example.warp_factor, dtype=torch.float32),
            "eq": torch.tensor(example.eq),
            "clip": torch.tensor(clip),
        }


class _ClipDataset(Dataset):
    """Whole held-out clips, for clip-level validation accuracy: of the real classes, and on a root of one machine
    also as each synthesized class that warps or equalizes it (`warps`, `eqs`: what `on_after_batch_transfer` does)."""

    def __init__(self, waves: list[np.ndarray], labels: list[int], warps: list[float] | None = None,
                 eqs: list[int] | None = None) -> None:
        self.waves = waves
        self.labels = labels
        self.warps = warps
        self.eqs = eqs

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = {"wave": torch.from_numpy(self.waves[index]), "label": torch.tensor(self.labels[index])}
        if self.warps is not None and self.eqs is not None:
            item["warp"] = torch.tensor(self.warps[index], dtype=torch.float32)
            item["eq"] = torch.tensor(self.eqs[index])
        return item


class _EpochSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), and tells the dataset which epoch it is."""

    def __init__(self, dataset: _CropDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(len(self.dataset), generator=generator).tolist())


class MachineIDDataModule(L.LightningDataModule):
    """Normal training clips labelled by machine ID, plus warped and mixed synthetic machine instances.

    Args:
        root: corpus root in a DCASE layout (see `ssad.audio.layout.index_root`).
        machine_types: types to train on; "all" takes every type under `root`.
        exclude_ids: machines (`type/id`, e.g. "fan/id_00") left out entirely, e.g. to enrol them later.
        n_warped: up to this many classes made by spectral warping of a real ID (0 = none); fewer when
            the real IDs' warp ranges are full (see `plan_synthetic_classes`), logged.
        n_temporal: up to this many classes that re-time a real ID (played backwards, or amplitude-modulated
            at a fixed rate of their own; see `plan_temporal_classes`), 0 = none.
        n_equalized: up to this many classes that boost or cut one band of a real ID by a fixed gain (see
            `plan_equalized_classes`), 0 = none.
        equalized_per_id: instead of `n_equalized`, this many such classes per real ID (rounded half up:
            2.5 gives 40 for 16 IDs and 5 for 2), so that they stay a fixed share of the classes; 0 = off.
        n_mixed: up to this many classes made by mixing a fixed pair of real IDs (0 = none); pairs
            cross machine types when a type has too few, and never exceed the pairs there are; logged.
        warp_range: range the warp factors are drawn from (log-uniform).
        min_warp: smallest allowed |factor - 1|.
        mix_ratio_range: range of the first source's share in a mixed example.
        mix_within_type: draw mixed pairs within one machine type.
        crop_frames: log-mel frames of each training crop (the window the network sees).
        crop_views: windows each training crop spans, cut into that many neighbouring views of one recording
            for a self-supervised task (`MachineIDClassifier.contrastive`); 1 = one window.
        clip_seconds: every clip is cut or filled to this length (None = each clip whole, at its own length;
            training crops are drawn anywhere in it, a clip shorter than a crop is repeated to fill it).
        length_policy: how clips shorter than `clip_seconds` are filled: "repeat" or "zero".
        random_phase: a clip shorter than a training crop is repeated from a random point of it rather than
            from its start, so that its crops differ from epoch to epoch.
        attribute_classes: a real class per machine and recording condition (the attributes of a DCASE
            2021-2024 name or attribute table, e.g. `fan/section_00|speed=1200`) rather than per machine;
            a machine without attributes stays one class. Scorers still group clips by machine.
        features: `LogMel` keyword arguments.
        batch_size: training batch size.
        val_fraction: share of each real ID's clips held out for validation (split by clip).
        augment: cheap waveform augmentation (gain, noise, shift).
        heavy_augment: also pitch shift and time stretch (slow).
        examples_per_class: the epoch budget: random crops of every class, real or synthesized, per
            epoch, so that an epoch costs (classes x examples_per_class) crops whatever the folder holds;
            fewer when a real class has fewer training clips on average (an epoch is at most one pass).
            None = one pass over the folder: each real clip once, each synthesized class as many.
        num_workers: data loader workers.
        skip_bad: skip unreadable files (listed in the log) instead of failing.
        seed: fixes the classes, the split, the crops and the augmentation.
    """

    def __init__(
        self,
        root: str,
        machine_types: list[str] | str = "all",
        exclude_ids: list[str] | None = None,
        n_warped: int = 0,
        n_mixed: int = 0,
        n_temporal: int = 0,
        n_equalized: int = 0,
        equalized_per_id: float = 0.0,
        warp_range: tuple[float, float] = (0.8, 1.25),
        min_warp: float = 0.04,
        mix_ratio_range: tuple[float, float] = (0.3, 0.7),
        mix_within_type: bool = True,
        crop_frames: int = 64,
        crop_views: int = 1,
        clip_seconds: float | None = None,
        length_policy: str = "repeat",
        random_phase: bool = False,
        attribute_classes: bool = False,
        features: dict | None = None,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        augment: bool = True,
        heavy_augment: bool = False,
        examples_per_class: int | None = 32,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            msg = f"val_fraction must be in [0, 1), got {val_fraction}"
            raise ValueError(msg)
        if examples_per_class is not None and examples_per_class < 1:
            msg = f"examples_per_class must be >= 1 or None (one pass over the clips), got {examples_per_class}"
            raise ValueError(msg)
        if crop_frames < 2:
            msg = f"crop_frames must be >= 2, got {crop_frames}"
            raise ValueError(msg)
        if crop_views < 1:
            raise ValueError(f"crop_views must be >= 1, got {crop_views}")
        equalized_count(n_equalized, equalized_per_id, 0)  # a bad combination fails here, not at setup
        self.save_hyperparameters()
        self.log_mel = LogMel(**(features or {}))
        self.class_names: list[str] = []
        self.synthetic_classes: list[SyntheticClass] = []
        self._eq_gains: Tensor | None = None
        self._train: _CropDataset | None = None
        self._validation_paths: list[str] = []
        self._val: _ClipDataset | None = None

    @property
    def feature_params(self) -> dict:
        """The `LogMel` parameters features are computed with."""
        return self.log_mel.params

    @property
    def num_clips(self) -> int:
        """Recordings read, validation ones included (known after `setup`): the index space of a clip-instance head."""
        return len(self._train.waves) if self._train is not None else 0

    @property
    def longest_clip_frames(self) -> int:
        """Log-mel frames of the longest recording read (known after `setup`; 0 before)."""
        return self.log_mel.num_frames(max(len(w) for w in self._train.waves)) if self._train is not None else 0

    @property
    def num_classes(self) -> int:
        """Real plus synthesized classes (known after `setup`)."""
        return len(self.class_names)

    @property
    def machine_types(self) -> list[str]:
        """The machine types of the real classes (known after `setup`)."""
        return sorted({machine_type_of(name) for name in self.class_names if not is_synthetic_class(name)})

    def _index_clips(self) -> list[Clip]:
        """Every clip of the chosen machine types (training and test: the check looks at both)."""
        types = None if self.hparams.machine_types in ("all", ["all"]) else self.hparams.machine_types
        if isinstance(types, str):
            types = [types]
        clips = index_root(self.hparams.root, machine_types=types, skip_bad=self.hparams.skip_bad)
        excluded = set(self.hparams.exclude_ids or ())
        unmatched = sorted(excluded - {clip_key(c) for c in clips})
        if unmatched:
            log.warning("exclude_ids %s match no machine under %s", unmatched, self.hparams.root)
        return [c for c in clips if clip_key(c) not in excluded]

    def _log_lengths(self, infos: list[AudioInfo], rate: int, num_samples: int | None) -> None:
        """Say what is done with clips of different lengths: used whole, or cut and filled to `clip_seconds`."""
        lengths = [int(i.frames * rate / i.sample_rate) for i in infos]
        crop = self.log_mel.num_samples(self.hparams.crop_frames)
        if num_samples is None:
            if max(lengths) - min(lengths) > rate // 1000:
                log.info("clip lengths differ (%.2f to %.2f s): each clip is used whole, at its own length",
                         min(lengths) / rate, max(lengths) / rate)
            short = sum(n < crop for n in lengths)
            if short:
                log.info("%d clip(s) shorter than a training crop (%.2f s) are repeated to fill it, as at inference",
                         short, crop / rate)
            return
        cut, filled = sum(n > num_samples for n in lengths), sum(n < num_samples for n in lengths)
        if cut or filled:
            log.info("clip_seconds=%g: %d clip(s) cut to it, %d filled up to it (length_policy %s)",
                     self.hparams.clip_seconds, cut, filled, self.hparams.length_policy)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        hp = self.hparams
        rate = self.log_mel.sample_rate
        checked = check_training_clips(self._index_clips(), sample_rate=rate, min_samples=self.log_mel.n_fft,
                                       skip_bad=hp.skip_bad)
        num_samples = None if hp.clip_seconds is None else int(round(hp.clip_seconds * rate))
        self._log_lengths(checked.infos, rate, num_samples)
        clips = checked.clips
        by_attributes = bool(hp.get("attribute_classes", False))
        real_names = sorted({class_name(c, by_attributes) for c in clips})
        self._plan_classes(real_names)  # before reading any audio: a root that cannot train fails now
        waves, _, kept = read_clips(
            [c.path for c in clips], skip_bad=hp.skip_bad, progress=True,
            sample_rate=rate, num_samples=num_samples, length_policy=hp.length_policy,
        )
        clips = [clips[i] for i in kept]
        if len(kept) < len(checked.clips) and sorted({class_name(c, by_attributes) for c in clips}) != real_names:
            real_names = sorted({class_name(c, by_attributes) for c in clips})  # skip_bad left out every clip of a class
            self._plan_classes(real_names)

        if by_attributes:
            machines = {clip_key(c) for c in clips}
            log.info("attribute classes: %d machines trained as %d classes, one per machine and recording condition",
                     len(machines), len(real_names))
        by_class: dict[int, list[int]] = {i: [] for i in range(len(real_names))}
        index_of = {name: i for i, name in enumerate(real_names)}
        for k, clip in enumerate(clips):
            by_class[index_of[class_name(clip, by_attributes)]].append(k)

        rng = np.random.default_rng(hp.seed)
        train_pools: dict[int, tuple[int, ...]] = {}
        val_waves, val_labels, self._validation_paths = [], [], []
        for label, members in by_class.items():
            members = list(rng.permutation(members))
            n_val = int(round(hp.val_fraction * len(members))) if len(members) > 1 else 0
            train_pools[label] = tuple(int(m) for m in members[n_val:])
            val_waves += [waves[m] for m in members[:n_val]]
            val_labels += [label] * n_val
            self._validation_paths += [str(Path(clips[m].path).resolve()) for m in members[:n_val]]

        examples, epoch_summary = self._epoch_examples(train_pools)

        augment = _augmenter(hp.heavy_augment, rate) if hp.augment else None
        crop_samples = self.log_mel.num_samples(hp.crop_views * hp.crop_frames)
        self._train = _CropDataset(waves, examples, crop_samples, tuple(hp.mix_ratio_range), augment, rate, hp.seed,
                                  random_phase=hp.get("random_phase", False))
        self._val = (self._one_machine_validation(val_waves, val_labels) if len(real_names) == 1
                     else _ClipDataset(val_waves, val_labels))
        log.info(
            "machine-ID data: %d real + %d synthesized classes; an epoch is %s = %d crops (%d steps of %d); "
            "%d validation clips",
            len(real_names), len(self.synthetic_classes), epoch_summary, len(examples),
            max(1, len(examples) // hp.batch_size), hp.batch_size, len(val_waves),
        )

    def _one_machine_validation(self, waves: list[np.ndarray], labels: list[int]) -> _ClipDataset:
        """The held-out clips of a root's only real class, and each again as every warped and equalized class of it.

        With one real class, a clip-level accuracy over the real classes alone asks only whether a held-out clip is
        taken for the machine rather than for one of its copies. The machine sits between its nearest warps, and
        held-out clips fell on a neighbour's side: with configs/demo.yaml on one folder of 24 clips it stayed at
        0.000 for all 12 epochs (while training accuracy reached 0.9), so the first epoch was the "best" checkpoint
        that `ssad detector` and `ssad evaluate` took. Told apart from its copies, the clips measure what training
        learns (re-timed classes are left out: they are made at read time, not here).
        """
        eq_rows = {offset: row for row, offset in
                   enumerate(k for k, c in enumerate(self.synthetic_classes) if c.kind == "eq")}
        copies = [(1 + offset, c.warp_factor, eq_rows.get(offset, -1)) for offset, c in enumerate(self.synthetic_classes)
                  if c.kind in ("warp", "eq")]
        log.info("one machine: validation tells its %d held-out clip(s) from %d warped or equalized cop(ies) of each "
                 "(val/acc_clip: the share of all %d taken for the right class)", len(waves), len(copies),
                 len(waves) * (1 + len(copies)))
        return _ClipDataset(waves + [w for _ in copies for w in waves], labels + [c for c, _, _ in copies for _ in waves],
                            [1.0] * len(waves) + [f for _, f, _ in copies for _ in waves],
                            [-1] * len(waves) + [e for _, _, e in copies for _ in waves])

    def _plan_classes(self, real_names: list[str]) -> None:
        """The synthesized classes for these real ones, logged, and every class name checked."""
        hp = self.hparams
        self.synthetic_classes = plan_synthetic_classes(
            real_names, hp.n_warped, hp.n_mixed, warp_range=tuple(hp.warp_range), min_warp=hp.min_warp,
            mix_within_type=hp.mix_within_type, seed=hp.seed,
        ) + plan_temporal_classes(real_names, hp.get("n_temporal", 0), seed=hp.seed) + plan_equalized_classes(
            real_names, equalized_count(hp.get("n_equalized", 0), hp.get("equalized_per_id", 0.0), len(real_names)),
            seed=hp.seed)
        self._eq_gains = None
        self.class_names = real_names + [s.name for s in self.synthetic_classes]
        log.info(describe_synthetic_classes(real_names, self.synthetic_classes, hp.n_warped, hp.n_mixed))
        check_class_names(self.class_names)

    def _epoch_examples(self, train_pools: dict[int, tuple[int, ...]]) -> tuple[list[_Example], str]:
        """One epoch's examples, and how many each class got (for the log): the budget, or one pass over the clips."""
        n_real = len(train_pools)
        mean_clips = max(1, round(sum(len(pool) for pool in train_pools.values()) / max(1, n_real)))
        budget = self.hparams.examples_per_class
        if budget is None:  # one pass: each real clip once, each synthesized class the mean of a real class
            examples = [_Example(label, (pool,)) for label, pool in train_pools.items() for _ in pool]
            per_class = mean_clips
            summary = f"one pass over {len(examples)} real clips + {len(self.synthetic_classes)} synthesized classes x {per_class}"
        else:  # every class the same: the budget, or fewer when a real class has fewer clips on average
            per_class = min(budget, mean_clips)
            examples = [_Example(label, (pool,)) for label, pool in train_pools.items() for _ in range(per_class)]
            cap = "one pass" if per_class < budget else f"examples_per_class={budget}"
            summary = (f"{n_real + len(self.synthetic_classes)} classes x {per_class} ({cap}; a real class has "
                       f"{mean_clips} training clips on average)")
        eq_offsets = [k for k, c in enumerate(self.synthetic_classes) if c.kind == "eq"]
        eq_rows = {offset: row for row, offset in enumerate(eq_offsets)}
        for offset, synthetic in enumerate(self.synthetic_classes):
            pools = tuple(train_pools[s] for s in synthetic.sources)
            retime = (synthetic.kind, synthetic.modulation_hz) if synthetic.kind in TEMPORAL_KINDS else None
            eq = eq_rows.get(offset, -1)
            examples += [_Example(n_real + offset, pools, synthetic.warp_factor, retime, eq)] * per_class
        return examples, summary

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            self._train, batch_size=hp.batch_size, sampler=_EpochSampler(self._train, hp.seed),
            num_workers=hp.num_workers, drop_last=len(self._train) > hp.batch_size, persistent_workers=False,
        )

    def val_dataloader(self) -> DataLoader:
        # whole clips of different lengths cannot be stacked: then one clip per batch
        same_length = len({len(w) for w in self._val.waves}) <= 1
        batch_size = max(1, self.hparams.batch_size // 8) if same_length else 1
        return DataLoader(self._val, batch_size=batch_size, num_workers=self.hparams.num_workers)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Waveforms -> log-mel on the batch's device; warped classes get their spectrum warped first."""
        self.log_mel.to(batch["wave"].device)
        spectrogram = self.log_mel.spectrogram(batch["wave"])
        if "warp" in batch:
            warp = batch["warp"]
            to_warp = warp != 1.0
            if bool(to_warp.any()):
                spectrogram = spectrogram.clone()
                spectrogram[to_warp] = warp_frequency(spectrogram[to_warp], warp[to_warp])
        if "eq" in batch and bool((batch["eq"] >= 0).any()):
            spectrogram = spectrogram * self._eq_gain_rows(batch["eq"], spectrogram).unsqueeze(-1)
        out = {"log_mel": self.log_mel.log_mel_from_spectrogram(spectrogram), "label": batch["label"]}
        if "clip" in batch:
            out["clip"] = batch["clip"]
        return out

    def _eq_gain_rows(self, rows: Tensor, spectrogram: Tensor) -> Tensor:
        """(batch, freq) power gains: an "eq" class's bump, 1 for every other example."""
        n_freq = spectrogram.shape[1]
        if self._eq_gains is None or self._eq_gains.shape[1] != n_freq:
            classes = [c for c in self.synthetic_classes if c.kind == "eq"]
            self._eq_gains = torch.cat([equalizer_gains(classes, n_freq, self.log_mel.sample_rate), torch.ones(1, n_freq)])
        table = self._eq_gains.to(spectrogram)
        return table[torch.where(rows >= 0, rows, len(table) - 1)]

    def set_epoch(self, epoch: int) -> None:
        """Make the training crops and augmentations those of `epoch` (they depend on seed, epoch and index)."""
        if self._train is not None:
            self._train.epoch = epoch

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the data: the class names, and the clips held out for validation, which the
        network never trained on (`ssad.models.runs.unseen_clips`: a detector's thresholds learn from them
        how much better the network knows its training clips than a new recording)."""
        return {"class_names": list(self.class_names), "validation_clips": list(self._validation_paths)}
