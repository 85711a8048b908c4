"""A saved detector in the field: enrol a new machine from a few normal clips, learn from false alarms, undo.

Nothing is retrained: the clips go through the detector's network, and only that machine's scorers and
thresholds are refitted on its normal reference clips. Every update is a new saved version (`ssad.detector.store`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssad.core.errors import SsadError
from ssad.data.clips import THIN_CLIPS
from ssad.data.recordings import groups_by_machine
from ssad.detector import store
from ssad.detector.detector import Detector, typical_seconds
from ssad.explain.bands import MEASURES, BandProfile, output_name
from ssad.scoring import Scorer, select_input
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.thresholds import AlarmThreshold, RecordingShift

__all__ = ["FIRST_MACHINE_CLIPS", "Update", "calibrate", "enroll", "feedback", "keep_calibration", "refit_machine",
           "undo"]

log = logging.getLogger("ssad")

#: clips the first machine of an empty detector needs. With no other machine to borrow a threshold from, its
#: thresholds come from its clips' held-out scores, which scorers give only to machines of more than THIN_CLIPS
#: clips. Measured (16 machines of the synthetic default, a pretrained encoder, gaussian scorer at percentile
#: 0.9): from 3 clips, whose in-sample scores sit below any new clip's, every normal test clip was flagged; from
#: 4 clips 2 %, 5 clips 3 %, all 30 clips 11 %.
FIRST_MACHINE_CLIPS = THIN_CLIPS + 1


@dataclass
class Update:
    """What an update did: the new version, the machine, its reference clips now, and each scorer's threshold.

    `false_alarm_rate` is what the machine's thresholds aim at; `shift` how much its default scorer's held-out
    normal scores move between its recordings (`RecordingShift`: a learning period is advised where they do).
    """

    version: int
    machine: str
    references: int
    thresholds: dict[str, float]
    skipped: list[str]
    false_alarm_rate: float | None = None
    shift: RecordingShift | None = None

    def format(self) -> str:
        """The command line's report: one line, and a second about the last recordings where they were checked."""
        limits = ", ".join(f"{name} {value:.4g}" for name, value in self.thresholds.items())
        skipped = f"; not scored by {', '.join(self.skipped)} (not a class of the model)" if self.skipped else ""
        rate = f" aiming at {self.false_alarm_rate:.3g} false alarms" if self.false_alarm_rate is not None else ""
        line = (f"{self.machine}: {self.references} normal reference clips, thresholds {limits}{rate}{skipped} "
                f"(version {self.version})")
        return line if self.shift is None else f"{line}\n{self.machine}: {self.shift.format()}"


def _held_out_threshold(scorer: Scorer, base: Scorer, thresholds: AlarmThreshold, machine: str,
                        X: Any, groups: np.ndarray, rate: float | None) -> tuple[Scorer, AlarmThreshold]:
    """`machine` refitted into `base` on X, and its threshold set from X's scores with each recording held out."""
    ids = [machine] * len(groups)
    refit = base.refit_ids(X, ids)
    held_out = held_out_scores(refit, X, ids, groups, base=base)
    return refit, thresholds.refit_ids(held_out, ids, groups, false_alarm_rate=rate)


def refit_machine(detector: Detector, machine: str, outputs: Mapping[str, np.ndarray],
                  groups: Sequence[int] | None = None, *,
                  false_alarm_rate: float | None = None) -> tuple[Detector, list[str]]:
    """A detector whose scorers and thresholds for `machine` are fitted on `outputs` alone; other machines kept.

    `groups` labels each clip's recording (default: contiguous blocks): the thresholds are set from scores with
    whole recordings held out, aiming at `false_alarm_rate` (default: the machine's own so far, else the
    detector's). Returns the detector and the scorers that cannot take the machine (a classifier's softmax).
    """
    n = len(next(iter(outputs.values())))
    groups = groups_by_machine(None, [machine] * n) if groups is None else np.asarray(groups, dtype=np.int64)
    scorers, thresholds, skipped = dict(detector.scorers), dict(detector.thresholds), []
    for name, scorer in detector.scorers.items():
        if not scorer.supports_id(machine):
            skipped.append(name)
            continue
        scorers[name], thresholds[name] = _held_out_threshold(
            scorer, scorer, detector.thresholds[name], machine, select_input(scorer, outputs), groups,
            false_alarm_rate)
    if detector.default_scorer in skipped:
        raise SsadError(f"the detector's default scorer {detector.default_scorer!r} cannot score {machine} "
                        f"(not a class of the model); it needs a scorer such as gaussian or knn")
    for name in skipped:
        log.info("scorer %s skipped for %s: it scores only the machines the model was trained on", name, machine)
    references = (detector.references.replaced(machine, outputs, groups) if detector.references is not None
                  else None)
    bands = detector.normal_bands
    if all(output_name(m) in outputs for m in MEASURES):
        ids = [machine] * n
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
    threshold = detector.thresholds[detector.default_scorer]
    return Update(version, machine, count, limits, skipped, threshold.rate_of(machine), threshold.shift_of(machine))


def enroll(directory: str | Path, machine: str, files: Sequence[str | Path], *, progress: bool = False,
           false_alarm_rate: float | None = None) -> Update:
    """Add a new machine from a few normal recordings: fit its scorers and thresholds, save a new version.

    The thresholds aim at `false_alarm_rate` (default: the detector's) on recordings made later: they are set
    from the clips' scores with each recording held out (`ssad.data.recordings` tells the recordings apart).
    Where its held-out scores shift between recordings, a learning period is advised (`Update.shift`, logged).
    """
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
        groups = groups_by_machine(files, [machine] * len(files))
        updated, skipped = refit_machine(detector, machine, outputs, groups, false_alarm_rate=false_alarm_rate)
        shift = updated.thresholds[updated.default_scorer].shift_of(machine)
        if shift.shifting:
            log.warning("%s: %s", machine, shift.format())
        if updated.clip_seconds is None:
            updated.clip_seconds = typical_seconds(files)
            log.info("clip length of this detector, from %s's recordings: %g s (what `ssad monitor` scores at once)",
                     machine, updated.clip_seconds)
        return _commit(directory, updated, machine, "enroll", files, skipped)


def _known(detector: Detector, directory: Path, machine: str) -> None:
    """SsadError unless the detector knows `machine` and keeps its reference clips."""
    if machine not in detector.machine_ids:
        raise SsadError(f"{directory}: unknown machine {machine!r}; it knows {detector.machine_ids} "
                        f"(a new machine is added with `ssad enroll`)")
    if detector.references is None or machine not in detector.references.machines:
        raise SsadError(f"{directory}: no stored reference clips for {machine} (the detector was saved before "
                        f"ssad kept them); save it again with `ssad detector` or `ssad evaluate`")


def feedback(directory: str | Path, machine: str, normal: Sequence[str | Path], *, progress: bool = False) -> Update:
    """A false alarm: add the clips to the machine's normal references, as a recording of their own, and refit its
    scorers and thresholds: the threshold moves with the references, since it now sees how far that recording sat."""
    directory = Path(directory)
    files = _check_files(normal, f"feedback for {machine}")
    with store.update_lock(directory):
        detector = Detector.load(directory)
        _known(detector, directory, machine)
        old, old_groups = detector.references.of(machine), detector.references.groups_of(machine)
        new = _outputs(detector, files, progress)
        outputs = {name: np.concatenate([old[name], new[name].astype(old[name].dtype)]) for name in old}
        groups = np.concatenate([old_groups, np.full(len(files), old_groups.max() + 1 if len(old_groups) else 0)])
        updated, skipped = refit_machine(detector, machine, outputs, groups)
        return _commit(directory, updated, machine, "feedback", files, skipped)


def calibrate(directory: str | Path, machine: str, files: Sequence[str | Path], *, progress: bool = False) -> Update:
    """A learning period from recordings of the normal machine where it stands: move its thresholds, not its model.

    The clips are scored by the detector as it is (they are new to it), and join the machine's held-out scores as
    a recording of their own; each threshold is read anew from all of them (`AlarmThreshold.calibrated`).
    """
    directory = Path(directory)
    files = _check_files(files, f"calibrate {machine}")
    with store.update_lock(directory):
        detector = Detector.load(directory)
        machine = detector.resolve_machine(machine)
        outputs = _outputs(detector, files, progress)
        thresholds = dict(detector.thresholds)
        for name, scorer in detector.scorers.items():
            if machine in scorer.ids_:
                scores = scorer.score(select_input(scorer, outputs), [machine] * len(files))
                thresholds[name] = detector.thresholds[name].calibrated(machine, scores)
        updated = Detector(detector.model, detector.scorers, thresholds, detector.default_scorer,
                           detector.references, clip_seconds=detector.clip_seconds,
                           normal_bands=detector.normal_bands)
        return _commit(directory, updated, machine, "calibrate", files, [])


def keep_calibration(directory: str | Path, machine: str, scorer: str, thresholds: AlarmThreshold,
                     source: str) -> Update:
    """Save one scorer's threshold of `machine`, calibrated elsewhere (a monitor's learning period on `source`),
    as a new version of the detector in `directory`."""
    directory = Path(directory)
    with store.update_lock(directory):
        detector = Detector.load(directory)
        _known(detector, directory, machine)
        if scorer not in detector.thresholds:
            raise SsadError(f"{directory}: no scorer {scorer!r}; it has {sorted(detector.thresholds)}")
        kept = dict(detector.thresholds)
        kept[scorer] = detector.thresholds[scorer].adopted(thresholds, machine)
        updated = Detector(detector.model, detector.scorers, kept, detector.default_scorer, detector.references,
                           clip_seconds=detector.clip_seconds, normal_bands=detector.normal_bands)
        return _commit(directory, updated, machine, "calibrate", [source], [])


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
