"""The check `ssad fit` runs before any training: everything later stages need of a root, from file headers only."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ssad.audio.clips import SYNTHETIC_MARKS, THIN_CLIPS, Clip, clip_key
from ssad.audio.layout import select
from ssad.audio.reading import AudioInfo, audio_info, log_conversions
from ssad.audio.screening import log_skipped, screen
from ssad.core.errors import BadInputError

__all__ = ["TrainingClips", "check_class_names", "check_training_clips", "clip_problem", "type_name_problems"]

log = logging.getLogger("ssad")

@dataclass(frozen=True)
class TrainingClips:
    """Normal training clips that passed the check, with their header facts (same order)."""

    clips: list[Clip]
    infos: list[AudioInfo]


def clip_problem(info: AudioInfo, *, sample_rate: int, min_samples: int) -> str | None:
    """Why a readable clip cannot give features (fewer than `min_samples`, one FFT frame, at `sample_rate`), or None."""
    if int(info.frames * sample_rate / info.sample_rate) >= min_samples:
        return None
    return (f"too short: {info.duration:.3f} s, less than one FFT frame ({min_samples} samples at "
            f"{sample_rate} Hz)")


def type_name_problems(clips: Sequence[Clip]) -> list[tuple[str, str]]:
    """(folder, why) for each machine type whose name holds a character reserved for synthesized classes."""
    problems = []
    for machine_type in sorted({c.machine_type for c in clips}):
        if any(ch in machine_type for ch in SYNTHETIC_MARKS):
            where = next(c.path.parent.parent for c in clips if c.machine_type == machine_type)
            problems.append((str(where), f"machine type {machine_type!r} holds one of {list(SYNTHETIC_MARKS)}, "
                                         "which mark synthesized classes; rename the folder"))
    return problems


def check_training_clips(clips: Sequence[Clip], *, sample_rate: int, min_samples: int,
                         skip_bad: bool = False) -> TrainingClips:
    """Check a root's clips for training and evaluation; raise one BadInputError naming every bad file or ID.

    Reads headers only (seconds for thousands of files). Fails on: no normal training clips, unreadable
    files, clips shorter than `min_samples` at `sample_rate` (no full FFT frame), machine types whose name
    holds a reserved character, and labelled test clips of an ID without training clips (evaluation could
    not score them). With `skip_bad`, bad files are left out and listed instead. Warns about thin IDs and
    says what is done with clips of other rates and channel counts.
    """
    problems = type_name_problems(clips)
    train = select(list(clips), split="train", label="normal")
    def probe(clip: Clip) -> tuple[AudioInfo, str | None]:
        info = audio_info(clip.path)
        return info, clip_problem(info, sample_rate=sample_rate, min_samples=min_samples)

    screened = screen(train, probe)
    good, infos, bad_files = screened.kept, screened.results, screened.problems
    if skip_bad:
        log_skipped(bad_files, "unusable training file(s)")
    else:
        problems += bad_files
    trained = {clip_key(c) for c in good}
    untrained = sorted({clip_key(c) for c in clips if c.split == "test" and c.label != "unknown"} - trained)
    problems += [(name, "has labelled test clips but no usable normal training clip: evaluation could not "
                        "score it") for name in untrained]
    if not good and not problems:
        problems.append(("(root)", "no normal training clips (expected <type>/train/normal_id_XX_*.wav)"))
    if problems:
        hint = " (skip_bad=True leaves the bad files out)" if bad_files and not skip_bad else ""
        raise BadInputError(problems, header=f"the root cannot be trained on{hint}")
    _warn_thin_ids(good)
    log_conversions(infos, sample_rate)
    return TrainingClips(good, infos)


def _warn_thin_ids(clips: Sequence[Clip]) -> None:
    """One warning per ID with fewer than `THIN_CLIPS` training clips, saying what it will get."""
    counts = Counter(clip_key(c) for c in clips)
    for name, n in sorted(counts.items()):
        if n < THIN_CLIPS:
            log.warning("%s has only %d normal training clip(s): it trains without validation clips, and its "
                        "scorers and threshold fall back to pooled statistics (said again at evaluation)", name, n)


def check_class_names(names: Sequence[str]) -> None:
    """Raise BadInputError if class names repeat (the classifier's softmax and the scorers need them unique)."""
    repeated = sorted(name for name, n in Counter(names).items() if n > 1)
    if repeated:
        raise BadInputError([(name, "class name repeats") for name in repeated], header="class names are not unique")
    if len(names) < 2:
        msg = (f"only one class ({', '.join(names)}): nothing to tell apart; set n_warped > 0 "
               "or train on more IDs")
        raise BadInputError([(names[0] if names else "(root)", msg)], header="too few classes")
