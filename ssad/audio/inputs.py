"""The recordings a command is given: folders and glob patterns expanded, every file read and checked, every
problem named at once. `ssad score`, `ssad enroll` and `ssad feedback` (and `Detector.score`, `Detector.enroll`)
take their inputs through here, so they accept the same things and say the same about bad files."""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ssad.audio.header_check import clip_problem
from ssad.audio.reading import ClipBatch, load_clip, log_conversions
from ssad.audio.screening import log_skipped, screen
from ssad.core.errors import BadInputError, SsadError

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
    infos = []

    def probe(item: Any) -> tuple[Any, str | None]:
        if isinstance(item, (str, Path)):
            wave, info = load_clip(item, sample_rate=sample_rate)
            infos.append(info)
            return wave, clip_problem(info, sample_rate=sample_rate, min_samples=min_samples)
        if waveform is None:
            return None, "not a recording's path"
        wave = waveform(item)
        return wave, None if len(wave) >= min_samples else (f"too short: {len(wave)} samples, less than one FFT "
                                                            f"frame ({min_samples} samples at {sample_rate} Hz)")

    screened = screen(items, probe, label=input_label)
    found, kept = list(problems) + screened.problems, screened.positions
    waves = screened.results if keep else []
    log_conversions(infos, sample_rate)
    if found and not skip_bad:
        total = len(items) + len(problems)
        raise BadInputError(found, header=f"cannot {action} {len(found)} of {total} input(s) (pass skip_bad=True "
                                          f"to {action} the others)")
    log_skipped(found, f"input(s) that cannot be used to {action}")
    if not kept:
        raise SsadError(f"nothing to {action}: " + ("every input was skipped" if found else "no input given"))
    return ClipBatch(waves, found, kept)
