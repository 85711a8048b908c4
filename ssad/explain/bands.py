"""What each machine's normal clips look like band by band: mean and spread of each band group's level and variability.

A band group is a run of adjacent mel bands, at several widths (`GROUP_SIZES`: single bands for a line, wider
groups for a change spread over many bands, whose evidence no single band holds). A clip's group level is
its log-mel averaged over the group's bands and over frames, its group variability the standard deviation
over frames of the group's mean (both in dB). A detector keeps, per machine, the mean and spread of both over
its normal clips, so an explanation can say which frequencies of a clip depart from that machine's normal
sound and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ssad.errors import SsadError

__all__ = ["BAND_LEVEL", "BAND_VARIABILITY", "GROUP_SIZES", "BandProfile", "MachineBands", "NORMAL_BANDS_FILE",
           "band_groups", "band_statistics"]

#: per-clip outputs `clip_outputs` adds beside the network's, so references keep them for refits
BAND_LEVEL = "band_level"
BAND_VARIABILITY = "band_variability"
NORMAL_BANDS_FILE = "normal_bands.npz"
#: widths of the band groups, in mel bands
GROUP_SIZES = (1, 4, 16)
#: smallest spread (dB) a z-score divides by: a few near-identical clips would otherwise make any change huge
SPREAD_FLOOR_DB = 0.5


@lru_cache(maxsize=8)
def band_groups(n_mels: int) -> np.ndarray:
    """(groups, 2) first and end (exclusive) mel band of every group, each width of `GROUP_SIZES` in turn."""
    return np.array([(start, min(start + size, n_mels)) for size in GROUP_SIZES if size <= n_mels
                     for start in range(0, n_mels, size)])


@lru_cache(maxsize=8)
def _group_means(n_mels: int) -> np.ndarray:
    """(groups, n_mels) matrix that averages a log-mel's bands into its groups."""
    groups = band_groups(n_mels)
    matrix = np.zeros((len(groups), n_mels))
    for row, (first, end) in enumerate(groups):
        matrix[row, first:end] = 1.0 / (end - first)
    return matrix


def band_statistics(log_mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_mels, frames) log-mel in dB -> each band group's level (mean) and variability (std over frames)."""
    series = _group_means(log_mel.shape[0]) @ np.asarray(log_mel, dtype=np.float64)
    return series.mean(axis=-1), series.std(axis=-1)


@dataclass(frozen=True)
class MachineBands:
    """One machine's normal band group statistics, (groups,) each, in dB; `clips` is how many clips they come from."""

    level_mean: np.ndarray
    level_spread: np.ndarray
    variability_mean: np.ndarray
    variability_spread: np.ndarray
    clips: int

    def z_scores(self, level: np.ndarray, variability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A clip's level and variability per band as z-scores against this machine's normal spread."""
        level_z = (level - self.level_mean) / np.maximum(self.level_spread, SPREAD_FLOOR_DB)
        variability_z = (variability - self.variability_mean) / np.maximum(self.variability_spread, SPREAD_FLOOR_DB)
        return level_z, variability_z


@dataclass
class BandProfile:
    """Per machine (rows in `machines` order), the normal band statistics `MachineBands` holds."""

    machines: list[str]
    level_mean: np.ndarray
    level_spread: np.ndarray
    variability_mean: np.ndarray
    variability_spread: np.ndarray
    clips: np.ndarray

    @classmethod
    def fit(cls, level: np.ndarray, variability: np.ndarray, ids: Sequence[str]) -> BandProfile:
        """Mean and spread (std over clips) per machine of the clips' group levels and variabilities, (n, groups)."""
        level, variability = np.asarray(level, dtype=np.float64), np.asarray(variability, dtype=np.float64)
        ids = np.asarray(ids, dtype=str)
        if level.shape != variability.shape or level.ndim != 2 or len(ids) != len(level):
            msg = f"band levels {level.shape}, variabilities {variability.shape} and {len(ids)} ids do not match"
            raise ValueError(msg)
        machines = sorted(set(ids.tolist()))
        rows = [ids == m for m in machines]
        return cls(
            machines,
            np.stack([level[r].mean(axis=0) for r in rows]),
            np.stack([level[r].std(axis=0) for r in rows]),
            np.stack([variability[r].mean(axis=0) for r in rows]),
            np.stack([variability[r].std(axis=0) for r in rows]),
            np.array([int(r.sum()) for r in rows]),
        )

    def refit(self, machine: str, level: np.ndarray, variability: np.ndarray) -> BandProfile:
        """A copy with `machine`'s statistics fitted anew on these clips alone; other machines unchanged."""
        fresh = BandProfile.fit(level, variability, [machine] * len(level))
        keep = [i for i, m in enumerate(self.machines) if m != machine]
        merged = {name: np.concatenate([getattr(self, name)[keep], getattr(fresh, name)])
                  for name in ("level_mean", "level_spread", "variability_mean", "variability_spread", "clips")}
        names = [self.machines[i] for i in keep] + [machine]
        order = np.argsort(names, kind="stable")
        return BandProfile([names[i] for i in order], **{k: v[order] for k, v in merged.items()})

    def of(self, machine: str) -> MachineBands | None:
        """One machine's statistics, or None when the profile has none for it."""
        if machine not in self.machines:
            return None
        i = self.machines.index(machine)
        return MachineBands(self.level_mean[i], self.level_spread[i], self.variability_mean[i],
                            self.variability_spread[i], int(self.clips[i]))

    def save(self, path: str | Path) -> None:
        """Plain npz (no pickle): the arrays plus the machine names."""
        np.savez(path, machines=np.asarray(self.machines, dtype=str), level_mean=self.level_mean,
                 level_spread=self.level_spread, variability_mean=self.variability_mean,
                 variability_spread=self.variability_spread, clips=self.clips)

    @classmethod
    def load(cls, path: str | Path) -> BandProfile | None:
        """Read `save`'s file; None when the detector was saved without one (before ssad kept them)."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                profile = cls([str(m) for m in npz["machines"]], *(npz[k] for k in (
                    "level_mean", "level_spread", "variability_mean", "variability_spread", "clips")))
        except (OSError, ValueError, KeyError) as error:
            raise SsadError(f"{path}: unreadable normal band statistics ({error})") from None
        shapes = {a.shape for a in (profile.level_mean, profile.level_spread, profile.variability_mean,
                                    profile.variability_spread)}
        if len(shapes) != 1 or next(iter(shapes))[0] != len(profile.machines):
            raise SsadError(f"{path}: normal band statistics do not match their {len(profile.machines)} machines")
        return profile
