"""The recordings a command is given: folders and glob patterns expanded, every file read and checked, every
problem named at once. `ssad score`, `ssad enroll` and `ssad feedback` (and `Detector.score`, `Detector.enroll`)
take their inputs through here, so they accept the same things and say the same about bad files."""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ssad.core.errors import BadInputError, SsadError
from ssad.data.audio import ClipBatch, load_clip, log_conversions
from ssad.data.validate import clip_problem

__all__ = ["AUDIO_SUFFIX", "Inputs", "expand_inputs", "input_label", "read_inputs"]

log = logging.getLogger("ssad")

#: what a folder given as input contributes: the files directly in it with this suffix (any case)
AUDIO_SUFFIX = ".wav"
_GLOB_CHARS = "*?["


def input_label(item: object, index: int) -> str:
    """How results and messages name an input: its path, or `waveform[i]`."""
    return str(item) if isinstance(item, (str, Path)) else f"waveform[{index}]"


class Inputs(list):
    """Expanded inputs (a list), with the index of the given input each came from and what could not be expanded."""

    def __init__(self, items: Sequence[Any], origins: Sequence[int], problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(items)
        self.origins = list(origins)
        self.problems = list(problems)


def expand_inputs(items: Sequence[Any]) -> Inputs:
    """Each folder replaced by the `.wav` files directly in it (sorted, hidden ones left out), each glob pattern (`new/*.wav`, quoted so
    that the shell left it alone) by the files it matches (sorted); files and waveforms stay as they are.

    A folder without `.wav` files and a pattern that matches nothing are problems (named, not raised): the
    reading that follows (`read_inputs`) reports them with the unreadable files.
    """
    expanded, origins, problems = [], [], []
    for k, item in enumerate(items):
        if not isinstance(item, (str, Path)):
            found = [item]
        elif Path(item).is_dir():
            found = sorted(str(p) for p in Path(item).iterdir()
                           if p.suffix.lower() == AUDIO_SUFFIX and p.is_file() and not p.name.startswith("."))
            if not found:
                problems.append((str(item), f"a folder without {AUDIO_SUFFIX} files directly in it"))
        elif not Path(item).exists() and any(c in str(item) for c in _GLOB_CHARS):
            found = sorted(p for p in glob.glob(str(item)) if Path(p).is_file())
            if not found:
                problems.append((str(item), "no such file, and as a pattern it matches none"))
        else:
            found = [item]
        expanded += found
        origins += [k] * len(found)
    return Inputs(expanded, origins, problems)


def read_inputs(items: Sequence[Any], *, sample_rate: int, min_samples: int, skip_bad: bool = False,
                action: str = "score", waveform: Callable[[Any], Any] | None = None, keep: bool = True,
                problems: Sequence[tuple[str, str]] = ()) -> ClipBatch:
    """Read every input at `sample_rate` and check it gives features (at least `min_samples`, one FFT frame).

    Paths are read whole (so unreadable, empty, truncated, NaN and too short files are all caught);
    other items go through `waveform` (None: not taken). Every problem, `problems` (from `expand_inputs`)
    included, is raised at once in one BadInputError, or with `skip_bad` logged and left out. `action` words
    the messages ("cannot score 2 of 5 input(s)"). With `keep=False` the waveforms are checked and dropped
    (for callers that read the files again their own way). Returns waves, problems and the kept indices.
    """
    waves, kept, infos, found = [], [], [], list(problems)
    for k, item in enumerate(items):
        label = input_label(item, k)
        if isinstance(item, (str, Path)):
            try:
                wave, info = load_clip(item, sample_rate=sample_rate)
            except BadInputError as error:
                found += error.problems
                continue
            infos.append(info)
            why = clip_problem(info, sample_rate=sample_rate, min_samples=min_samples)
        elif waveform is None:
            found.append((label, "not a recording's path"))
            continue
        else:
            wave = waveform(item)
            why = None if len(wave) >= min_samples else (f"too short: {len(wave)} samples, less than one FFT frame "
                                                         f"({min_samples} samples at {sample_rate} Hz)")
        if why:
            found.append((label, why))
            continue
        if keep:
            waves.append(wave)
        kept.append(k)
    log_conversions(infos, sample_rate)
    if found and not skip_bad:
        total = len(items) + len(problems)
        raise BadInputError(found, header=f"cannot {action} {len(found)} of {total} input(s) (pass skip_bad=True "
                                          f"to {action} the others)")
    if found:
        log.warning("skipped %d input(s) that cannot be used to %s:\n%s", len(found), action,
                    "\n".join(f"  {p}: {why}" for p, why in found))
    if not kept:
        raise SsadError(f"nothing to {action}: " + ("every input was skipped" if found else "no input given"))
    return ClipBatch(waves, found, kept)
