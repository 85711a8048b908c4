"""Short windows of log-mel frames from normal training clips: the training data of the frame-level density models."""

from __future__ import annotations

import functools
import logging

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssad.audio.clips import Clip
from ssad.audio.layout import index_root, select
from ssad.audio.reading import audio_info, read_clip
from ssad.audio.screening import log_skipped, screen
from ssad.core.errors import BadInputError
from ssad.features import FeatureCache, LogMel, compute_log_mels

__all__ = ["LogMelWindowDataModule", "LogMelWindowDataset"]

log = logging.getLogger("ssad")


class LogMelWindowDataset(Dataset):
    """Windows cut on demand from clips' log-mel frames laid end to end, so each frame is stored once.

    Args:
        frames: (n_mels, total_frames) every clip's log-mel, one after the other.
        starts: first frame (in `frames`) of each window.
        window_frames: frames per window.
    """

    def __init__(self, frames: Tensor, starts: Tensor, window_frames: int) -> None:
        self.frames = frames
        self.starts = starts
        self.window_frames = window_frames

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> Tensor:
        start = int(self.starts[index])
        return self.frames[:, start : start + self.window_frames]


class LogMelWindowDataModule(L.LightningDataModule):
    """Normal training clips as windows of `window_frames` log-mel frames, with a validation split drawn by clip.

    Batches are (batch, n_mels, window_frames) tensors. After `setup` the module also holds the
    training clips' per-band log-mel mean and standard deviation (`frame_mean`, `frame_std`) for a
    model to normalise with.

    Args:
        root: corpus root in a DCASE layout (see `ssad.audio.layout.index_root`).
        machine_types: types to train on; "all" takes every type under `root` (the DCASE baseline trains
            one model per type: give one).
        machine_ids: keep only these IDs (e.g. ["id_00"]) to train one model per machine; None = all.
        window_frames: frames per window (the baseline's 5).
        window_hop: frames between consecutive windows of a clip (the baseline's stride 1).
        features: `LogMel` keyword arguments (default: the DCASE baseline's 128 mels, n_fft 1024, hop 512, power 2).
        sample_rate: rate clips are read at (and resampled to if needed).
        batch_size: windows per batch.
        val_fraction: share of each machine's clips held out for validation (whole clips, so that
            overlapping windows of one clip never sit on both sides).
        max_windows_per_clip: keep at most this many windows of each clip, drawn at random once (None = all).
        cache_dir: folder to keep computed log-mels in between runs (None = no cache).
        num_workers: data loader workers.
        skip_bad: skip badly named files and files whose header shows them empty, truncated or unreadable
            (listed in the log) instead of failing.
        seed: fixes the validation split and the window subsampling.
    """

    def __init__(
        self,
        root: str,
        machine_types: list[str] | str = "all",
        machine_ids: list[str] | str | None = None,
        window_frames: int = 5,
        window_hop: int = 1,
        features: dict | None = None,
        sample_rate: int = 16000,
        batch_size: int = 512,
        val_fraction: float = 0.1,
        max_windows_per_clip: int | None = None,
        cache_dir: str | None = None,
        num_workers: int = 0,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not root:
            msg = f"root={root!r}: give the corpus folder (e.g. --data.root ROOT)"
            raise ValueError(msg)
        if window_frames < 1 or window_hop < 1:
            msg = f"window_frames and window_hop must be >= 1, got window_frames={window_frames}, window_hop={window_hop}"
            raise ValueError(msg)
        if batch_size < 1:
            msg = f"batch_size={batch_size} must be >= 1"
            raise ValueError(msg)
        if not 0.0 <= val_fraction < 1.0:
            msg = f"val_fraction={val_fraction} must be in [0, 1)"
            raise ValueError(msg)
        if max_windows_per_clip is not None and max_windows_per_clip < 1:
            msg = f"max_windows_per_clip={max_windows_per_clip} must be >= 1 or None"
            raise ValueError(msg)
        features = dict(features or {})
        if features.setdefault("sample_rate", sample_rate) != sample_rate:
            msg = f"features.sample_rate={features['sample_rate']} differs from sample_rate={sample_rate}; give one value"
            raise ValueError(msg)
        self.save_hyperparameters()
        self.log_mel = LogMel(**features)
        self.window_frames = window_frames
        self.frame_mean: Tensor | None = None
        self.frame_std: Tensor | None = None
        self.train_clips: list[Clip] = []
        self.val_clips: list[Clip] = []
        self._train: LogMelWindowDataset | None = None
        self._val: LogMelWindowDataset | None = None

    @property
    def feature_params(self) -> dict:
        """The `LogMel` parameters features are computed with."""
        return self.log_mel.params

    @property
    def n_mels(self) -> int:
        """Mel bands of each frame."""
        return self.log_mel.n_mels

    def _select_clips(self) -> list[Clip]:
        """The normal training clips of the chosen machine types and IDs."""
        hp = self.hparams
        types = hp.machine_types
        types = None if types in ("all", ["all"]) else [types] if isinstance(types, str) else list(types)
        clips = select(
            index_root(hp.root, machine_types=types, skip_bad=hp.skip_bad), split="train", label="normal"
        )
        if hp.machine_ids is not None:
            wanted = [hp.machine_ids] if isinstance(hp.machine_ids, str) else list(hp.machine_ids)
            found = sorted({c.machine_id for c in clips})
            missing = [i for i in wanted if i not in found]
            if missing:
                problems = [
                    (hp.root, f"no training clips of machine ID {i!r} (found: {', '.join(found)})")
                    for i in missing
                ]
                raise BadInputError(problems, header="cannot select machine IDs")
            clips = [c for c in clips if c.machine_id in wanted]
        if hp.skip_bad:
            clips = self._readable(clips)
        if not clips:
            raise BadInputError(
                [(hp.root, "no normal training clips")], header="cannot build training windows"
            )
        return clips

    @staticmethod
    def _readable(clips: list[Clip]) -> list[Clip]:
        """The clips whose file header passes `audio_info`'s checks; the others are logged and dropped."""
        screened = screen(clips, lambda clip: (audio_info(clip.path), None))
        log_skipped(screened.problems, "unusable clip(s)")
        return screened.kept

    def _log_mels(self, clips: list[Clip]) -> list[np.ndarray]:
        """(n_mels, frames) log-mel of each clip, read from or written to the cache when there is one."""
        hp = self.hparams
        cache = None
        if hp.cache_dir is not None:
            cache = FeatureCache(
                hp.cache_dir, self.feature_params, read_params={"sample_rate": hp.sample_rate}
            )
        read = functools.partial(read_clip, sample_rate=hp.sample_rate)
        return compute_log_mels([c.path for c in clips], self.log_mel, read=read, cache=cache)

    def prepare_data(self) -> None:
        """Fill the feature cache once (on one process) so that `setup` on every process only reads it."""
        if self.hparams.cache_dir is not None:
            self._log_mels(self._select_clips())

    def _split(self, clips: list[Clip]) -> tuple[list[int], list[int]]:
        """Indices of training and validation clips: `val_fraction` of each machine's clips, drawn with the seed."""
        rng = np.random.default_rng(self.hparams.seed)
        by_machine: dict[tuple[str, str], list[int]] = {}
        for i, clip in enumerate(clips):
            by_machine.setdefault(clip.key, []).append(i)
        fraction = self.hparams.val_fraction
        train, val = [], []
        for key in sorted(by_machine):
            members = rng.permutation(by_machine[key]).tolist()
            # At least one validation clip per machine when asked for any, and never all of them.
            n_val = min(max(round(fraction * len(members)), 1), len(members) - 1) if fraction > 0 else 0
            val += members[:n_val]
            train += members[n_val:]
        return sorted(train), sorted(val)

    def _windows(self, log_mels: list[np.ndarray], rng: np.random.Generator) -> LogMelWindowDataset:
        """The windows of these clips: every `window_hop`-th, at most `max_windows_per_clip` of each."""
        hp = self.hparams
        window = self.window_frames
        pieces, starts, offset = [], [], 0
        for log_mel in log_mels:
            if log_mel.shape[1] < window:  # too short for one window: repeat it, as `sliding_windows` does
                log_mel = np.tile(log_mel, (1, -(-window // log_mel.shape[1])))[:, :window]
            clip_starts = np.arange(0, log_mel.shape[1] - window + 1, hp.window_hop)
            if hp.max_windows_per_clip is not None and len(clip_starts) > hp.max_windows_per_clip:
                clip_starts = np.sort(rng.choice(clip_starts, hp.max_windows_per_clip, replace=False))
            pieces.append(log_mel)
            starts.append(clip_starts + offset)
            offset += log_mel.shape[1]
        frames = torch.from_numpy(np.concatenate(pieces, axis=1).astype(np.float32, copy=False))
        return LogMelWindowDataset(frames, torch.from_numpy(np.concatenate(starts)), window)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        clips = self._select_clips()
        log_mels = self._log_mels(clips)
        train_index, val_index = self._split(clips)
        self.train_clips = [clips[i] for i in train_index]
        self.val_clips = [clips[i] for i in val_index]

        # Per-band moments accumulated clip by clip in float64 (all frames of a full corpus would not fit twice).
        count, total, total_sq = 0, np.zeros(self.n_mels), np.zeros(self.n_mels)
        for i in train_index:
            frames = log_mels[i].astype(np.float64)
            count += frames.shape[1]
            total += frames.sum(axis=1)
            total_sq += np.square(frames).sum(axis=1)
        mean = total / count
        self.frame_mean = torch.from_numpy(mean).float()
        self.frame_std = torch.from_numpy(np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))).float()

        rng = np.random.default_rng([self.hparams.seed, 1])
        self._train = self._windows([log_mels[i] for i in train_index], rng)
        self._val = self._windows([log_mels[i] for i in val_index], rng) if val_index else None
        log.info(
            "log-mel windows: %d training clips (%d windows), %d validation clips (%d windows)",
            len(self.train_clips),
            len(self._train),
            len(self.val_clips),
            len(self._val or ()),
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        # Drop a last partial batch: a batch of one window would break BatchNorm in training mode.
        return DataLoader(
            self._train,
            batch_size=hp.batch_size,
            shuffle=True,
            num_workers=hp.num_workers,
            drop_last=len(self._train) > hp.batch_size,
            generator=torch.Generator().manual_seed(hp.seed),
            persistent_workers=hp.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self._val is None:
            return []
        hp = self.hparams
        return DataLoader(self._val, batch_size=hp.batch_size, num_workers=hp.num_workers)
