"""A saved detector in the field: enrol a new machine from a few normal clips, learn from false alarms, undo.

Nothing is retrained: the clips go through the detector's network, and only that machine's scorers and
thresholds are refitted on its normal reference clips. Every update is a new saved version (`ssad.detector.store`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssad.core.errors import SsadError
from ssad.data.clips import THIN_CLIPS
from ssad.detector import store
from ssad.detector.detector import Detector, typical_seconds
from ssad.explain.bands import MEASURES, BandProfile, output_name
from ssad.scoring import select_input

__all__ = ["FIRST_MACHINE_CLIPS", "Update", "enroll", "feedback", "refit_machine", "undo"]

log = logging.getLogger("ssad")

#: clips the first machine of an empty detector needs. With no other machine to borrow a threshold from, its
#: thresholds come from its clips' held-out scores, which scorers give only to machines of more than THIN_CLIPS
#: clips. Measured (16 machines of the synthetic default, a pretrained encoder, gaussian scorer at percentile
#: 0.9): from 3 clips, whose in-sample scores sit below any new clip's, every normal test clip was flagged; from
#: 4 clips 2 %, 5 clips 3 %, all 30 clips 11 %.
FIRST_MACHINE_CLIPS = THIN_CLIPS + 1


@dataclass
class Update:
    """What an update did: the new version, the machine, its reference clips now, and each scorer's threshold."""

    version: int
    machine: str
    references: int
    thresholds: dict[str, float]
    skipped: list[str]

    def format(self) -> str:
        """One line for the command line."""
        limits = ", ".join(f"{name} {value:.4g}" for name, value in self.thresholds.items())
        skipped = f"; not scored by {', '.join(self.skipped)} (not a class of the model)" if self.skipped else ""
        return f"{self.machine}: {self.references} normal reference clips, thresholds {limits}{skipped} (version {self.version})"


def refit_machine(detector: Detector, machine: str, outputs: Mapping[str, np.ndarray]) -> tuple[Detector, list[str]]:
    """A detector whose scorers and thresholds for `machine` are fitted on `outputs` alone; other machines kept.

    Returns it and the scorers that cannot take the machine (a classifier's softmax scores only its classes).
    """
    n = len(next(iter(outputs.values())))
    ids = [machine] * n
    scorers, thresholds, skipped = dict(detector.scorers), dict(detector.thresholds), []
    for name, scorer in detector.scorers.items():
        if not scorer.supports_id(machine):
            skipped.append(name)
            continue
        refit = scorer.refit_ids(select_input(scorer, outputs), ids)
        scorers[name] = refit
        own = np.asarray(refit.train_ids_) == machine
        thresholds[name] = detector.thresholds[name].refit_ids(refit.train_scores_[own], ids)
    if detector.default_scorer in skipped:
        raise SsadError(f"the detector's default scorer {detector.default_scorer!r} cannot score {machine} "
                        f"(not a class of the model); it needs a scorer such as gaussian or knn")
    for name in skipped:
        log.info("scorer %s skipped for %s: it scores only the machines the model was trained on", name, machine)
    references = detector.references.replaced(machine, outputs) if detector.references is not None else None
    bands = detector.normal_bands
    if all(output_name(m) in outputs for m in MEASURES):
        bands = BandProfile.from_outputs(dict(outputs), ids) if bands is None else bands.refit(machine, dict(outputs))
    updated = Detector(detector.model, scorers, thresholds, detector.default_scorer, references,
                       clip_seconds=detector.clip_seconds, normal_bands=bands)
    return updated, skipped


def _check_files(files: Sequence[str | Path], what: str) -> list[str]:
    if not files:
        raise SsadError(f"{what}: no recordings given")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise SsadError(f"{what}: no such file(s): {', '.join(missing)}")
    return [str(f) for f in files]


def _check_name(machine: str) -> str:
    if not machine or machine != machine.strip() or any(c.isspace() or not c.isprintable() for c in machine):
        raise SsadError(f"machine name {machine!r} must be non-empty printable text without spaces, e.g. site-a/fan-7")
    return machine


def _commit(directory: Path, detector: Detector, machine: str, action: str, files: Sequence[str],
            skipped: list[str]) -> Update:
    record = {"action": action, "machine": machine, "files": [str(f) for f in files]}
    version = store.commit(directory, detector.save_state, record)
    refs = detector.references.of(machine) if detector.references is not None else {}
    count = len(next(iter(refs.values()))) if refs else len(files)
    limits = {name: thr.threshold_[machine] for name, thr in detector.thresholds.items() if machine in thr.threshold_}
    return Update(version, machine, count, limits, skipped)


def enroll(directory: str | Path, machine: str, files: Sequence[str | Path], *, progress: bool = False) -> Update:
    """Add a new machine from a few normal recordings: fit its scorers and threshold, save a new version."""
    directory, machine = Path(directory), _check_name(machine)
    files = _check_files(files, f"enroll {machine}")
    with store.update_lock(directory):
        detector = Detector.load(directory)
        if machine in detector.machine_ids:
            raise SsadError(f"{directory}: {machine} is already known to this detector; add normal clips with "
                            f"`ssad feedback --machine {machine} --normal FILES`")
        if not detector.machine_ids and len(files) < FIRST_MACHINE_CLIPS:
            raise SsadError(f"{directory}: {machine} would be this detector's first machine, whose thresholds come "
                            f"from its own clips alone: give at least {FIRST_MACHINE_CLIPS} normal recordings of it, "
                            f"not {len(files)}")
        outputs = _outputs(detector, files, progress)
        updated, skipped = refit_machine(detector, machine, outputs)
        if updated.clip_seconds is None:
            updated.clip_seconds = typical_seconds(files)
            log.info("clip length of this detector, from %s's recordings: %g s (what `ssad monitor` scores at once)",
                     machine, updated.clip_seconds)
        return _commit(directory, updated, machine, "enroll", files, skipped)


def feedback(directory: str | Path, machine: str, normal: Sequence[str | Path], *, progress: bool = False) -> Update:
    """A false alarm: add the clips to the machine's normal references and refit its scorers and threshold."""
    directory = Path(directory)
    files = _check_files(normal, f"feedback for {machine}")
    with store.update_lock(directory):
        detector = Detector.load(directory)
        if machine not in detector.machine_ids:
            raise SsadError(f"{directory}: unknown machine {machine!r}; it knows {detector.machine_ids} "
                            f"(a new machine is added with `ssad enroll`)")
        if detector.references is None or machine not in detector.references.machines:
            raise SsadError(f"{directory}: no stored reference clips for {machine} (the detector was saved before "
                            f"ssad kept them); save it again with `ssad detector` or `ssad evaluate`")
        old = detector.references.of(machine)
        new = _outputs(detector, files, progress)
        outputs = {name: np.concatenate([old[name], new[name].astype(old[name].dtype)]) for name in old}
        updated, skipped = refit_machine(detector, machine, outputs)
        return _commit(directory, updated, machine, "feedback", files, skipped)


def undo(directory: str | Path, machine: str) -> dict:
    """Roll back the detector's last update, which must be of `machine`; returns what that update was."""
    directory = Path(directory)
    Detector.load(directory)  # a clear error for a folder that is no detector
    with store.update_lock(directory):
        return store.undo(directory, machine)


def _outputs(detector: Detector, files: Sequence[str], progress: bool) -> dict[str, np.ndarray]:
    """The network's per-clip outputs of the files (and band statistics), with only the outputs the references keep."""
    from ssad.detector.detector import clip_outputs

    outputs = clip_outputs(detector.model, files, progress=progress)
    if detector.references is not None:
        # references of no machine yet keep what the scorers take
        kept = detector.references.outputs or {scorer.input_name for scorer in detector.scorers.values()}
        keep = {*kept, *map(output_name, MEASURES)}
        outputs = {name: value for name, value in outputs.items() if name in keep}
    return outputs
