"""Which clips of a machine were recorded together: the groups a threshold holds out whole.

A clip's score shifts with the recording it came from (microphone moved, another load, other room noise), so a
threshold that must hold on recordings made later is set from scores of whole recordings held out, not single
clips (`ssad.scoring.held_out`). What the files say about their recordings, in order of trust:
1. **gaps in the numbers of their names**: ``rec_100 .. rec_104, rec_200 ..`` are two recordings (fault3's pieces);
2. **gaps in their file times** of an hour or more: recording days, when the files kept their times;
3. otherwise **contiguous blocks of the file order** (names that count up or carry a timestamp are in recording
   order), `BLOCKS` of them, none smaller than `MIN_BLOCK_CLIPS` clips: a machine of fewer than twice that is one
   group, and its clips are held out one at a time (a fold of a few clips left would be a poorer fit than a clip
   held out, and blocks of file order are a guess at recordings, not a record of them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["BLOCKS", "MIN_BLOCK_CLIPS", "MIN_GROUP_CLIPS", "TIME_GAP_S", "blocks", "groups_by_machine", "recording_groups"]

#: contiguous blocks of the file order when neither names nor times tell the recordings apart
BLOCKS = 5
#: fewest clips a group should hold on average: groups of single clips would be clips held out, not recordings
MIN_GROUP_CLIPS = 2
#: fewest clips a block of the file order holds
MIN_BLOCK_CLIPS = 4
#: a pause between two files' times (modification times) this long starts a new recording
TIME_GAP_S = 3600.0

_NUMBER = re.compile(r"\d+")


def blocks(n: int, count: int = BLOCKS) -> np.ndarray:
    """Group labels of `n` clips in `count` contiguous blocks of (nearly) equal size, fewer when `n` is small (none
    under `MIN_BLOCK_CLIPS` clips)."""
    count = max(1, min(count, n // MIN_BLOCK_CLIPS))
    return (np.arange(n) * count // max(n, 1)).astype(np.int64)


def _usable(labels: np.ndarray) -> bool:
    """Groups that say something: at least two, and `MIN_GROUP_CLIPS` clips each on average."""
    count = len(np.unique(labels))
    return 2 <= count <= len(labels) / MIN_GROUP_CLIPS


def _by_name_numbers(paths: Sequence[str | Path]) -> np.ndarray | None:
    """Groups where the last number in the file names (in file order) jumps by more than one; None if none tell."""
    numbers = []
    for path in paths:
        found = _NUMBER.findall(Path(path).stem)
        if not found:
            return None
        numbers.append(int(found[-1]))
    steps = np.diff(numbers)
    if np.any(steps <= 0):  # not counting up in file order: the numbers say nothing about recordings
        return None
    labels = np.concatenate([[0], np.cumsum(steps > 1)]).astype(np.int64)
    return labels if _usable(labels) else None


def _by_file_times(paths: Sequence[str | Path]) -> np.ndarray | None:
    """Groups split at pauses of `TIME_GAP_S` or more between file times; None when the times show none."""
    try:
        times = np.array([Path(p).stat().st_mtime for p in paths])
    except OSError:
        return None
    order = np.argsort(times, kind="stable")
    gaps = np.diff(times[order]) >= TIME_GAP_S
    labels = np.empty(len(paths), dtype=np.int64)
    labels[order] = np.concatenate([[0], np.cumsum(gaps)])
    return labels if _usable(labels) else None


def recording_groups(paths: Sequence[str | Path] | int) -> tuple[np.ndarray, str]:
    """A recording-group label per clip (in the given order), and how the groups were told apart.

    `paths` in file order, or a clip count when there are no files (waveforms): contiguous blocks then.
    """
    if isinstance(paths, int):
        return blocks(paths), "blocks"
    if len(paths) >= 2 * MIN_GROUP_CLIPS:
        for how, find in (("names", _by_name_numbers), ("file times", _by_file_times)):
            labels = find(paths)
            if labels is not None:
                return labels, how
    return blocks(len(paths)), "blocks"


def groups_by_machine(paths: Sequence[str | Path] | None, machines: Sequence[str]) -> np.ndarray:
    """`recording_groups` of each machine's clips (in file-name order within the machine), a label per clip.

    Without paths (waveforms, or outputs computed elsewhere) each machine's clips, in their order, form blocks.
    """
    machines = np.asarray(machines, dtype=str)
    labels = np.zeros(len(machines), dtype=np.int64)
    for machine in np.unique(machines):
        rows = np.flatnonzero(machines == machine)
        if paths is None:
            labels[rows] = blocks(len(rows))
            continue
        order = sorted(rows, key=lambda k: str(paths[k]))
        labels[order] = recording_groups([paths[k] for k in order])[0]
    return labels
