"""A detector in the field: enrol a new machine from a few normal clips, calibrate it where it stands, learn from
false alarms, keep confirmed faults, undo and redo.

Nothing is retrained: the clips go through the detector's network, and only that machine's scorers and
thresholds are refitted on its normal reference clips. Thresholds aim at a stated false-alarm rate on recordings
made later (`ssad.scoring.thresholds`): they are set from scores with each recording held out. `enroll_machine`,
`calibrate_machine` and `add_feedback` update a detector in memory; `enroll`, `calibrate`, `feedback`, `undo` and
`redo` update a detector's folder, each a new saved version
(`ssad.detector.store`). Recordings come in as `ssad score` takes them (`ssad.audio.inputs`): files, folders, patterns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import ssad.detector.store as store
from ssad.audio.clips import THIN_CLIPS
from ssad.audio.inputs import expand_inputs, read_inputs
from ssad.audio.recordings import groups_by_machine, recording_groups
from ssad.core.errors import SsadError
from ssad.detector.state import DetectorState, not_a_detector
from ssad.encoder.file_outputs import clip_outputs, typical_seconds
from ssad.features.bands import MEASURES, BandProfile, output_name
from ssad.scoring import Scorer, select_input
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.recording_shift import RecordingShift
from ssad.scoring.thresholds import AlarmThreshold

__all__ = ["FIRST_MACHINE_CLIPS", "Update", "add_feedback", "calibrate", "calibrate_machine", "enroll",
           "enroll_machine", "feedback", "keep_calibration", "redo", "refit_machine", "undo"]

log = logging.getLogger("ssad")

#: clips the first machine of an empty detector needs. With no other machine to borrow a threshold from, its
#: thresholds come from its clips' held-out scores, which scorers give only to machines of more than THIN_CLIPS
#: clips. Measured (16 machines of the synthetic default, a pretrained encoder, gaussian scorer at percentile
#: 0.9): from 3 clips, whose in-sample scores sit below any new clip's, every normal test clip was flagged; from
#: 4 clips 2 %, 5 clips 3 %, all 30 clips 11 %.
FIRST_MACHINE_CLIPS = THIN_CLIPS + 1


@dataclass
class Update:
    """What an update did: the machine, its reference clips now, each scorer's threshold, the clips it took and the
    version it made (None for a detector only in memory).

    `false_alarm_rate` is what the machine's thresholds aim at; `shift` how much its default scorer's held-out
    normal scores move between its recordings (`RecordingShift`: a learning period is advised where they do).
    """

    version: int | None
    machine: str
    references: int
    thresholds: dict[str, float]
    skipped: list[str]
    action: str = "enroll"
    files: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    confirmed: int = 0
    false_alarm_rate: float | None = None
    shift: RecordingShift | None = None

    def record(self) -> dict:
        """What the saved version records of it (`ssad.detector.store.version_record`)."""
        return {"action": self.action, "machine": self.machine, "files": self.files,
                **({"anomalies": self.anomalies} if self.anomalies else {})}

    def format(self) -> str:
        """The command line's report: one line, and for an enrolment a second on how its recordings differ."""
        limits = ", ".join(f"{name} {value:.4g}" for name, value in self.thresholds.items())
        skipped = f"; not scored by {', '.join(self.skipped)} (not a class of the model)" if self.skipped else ""
        version = f" (version {self.version})" if self.version is not None else ""
        rate = f" aiming at {self.false_alarm_rate:.3g} false alarms" if self.false_alarm_rate is not None else ""
        refit = f"{self.machine}: {self.references} normal reference clips, thresholds {limits}{rate}{skipped}"
        if self.action == "enroll":
            shift = f"\n{self.machine}: {self.shift.format()}" if self.shift is not None else ""
            return f"enrolled {refit}{version}{shift}"
        if self.action == "calibrate":
            return f"calibrated {self.machine} on {len(self.files)} site recording(s): thresholds {limits}{rate}{version}"
        parts = [f"learned from {len(self.files)} false alarm(s): {refit}"] if self.files else []
        if self.anomalies:
            parts.append(f"recorded {len(self.anomalies)} confirmed fault(s) of {self.machine} ({self.confirmed} in "
                         "all)" + ("" if self.files else "; its normal references and thresholds are unchanged"))
        return "; ".join(parts) + version


def _held_out_threshold(scorer: Scorer, thresholds: AlarmThreshold, machine: str, X: Any, groups: np.ndarray,
                        rate: float | None) -> tuple[Scorer, AlarmThreshold]:
    """`machine` refitted into `scorer` on X, and its threshold set from X's scores with each recording held out."""
    ids = [machine] * len(groups)
    refit = scorer.refit_ids(X, ids)
    held_out = held_out_scores(refit, X, ids, groups, base=scorer)
    return refit, thresholds.refit_ids(held_out, ids, groups, false_alarm_rate=rate)


def refit_machine(detector: DetectorState, machine: str, outputs: Mapping[str, np.ndarray],
                  groups: Sequence[int] | None = None, *,
                  false_alarm_rate: float | None = None) -> tuple[DetectorState, list[str]]:
    """A detector whose scorers and thresholds for `machine` are fitted on `outputs` alone; other machines kept.

    `groups` labels each clip's recording (default: contiguous blocks): the thresholds are set from scores with
    whole recordings held out, aiming at `false_alarm_rate` (default: the machine's own so far, else the
    detector's). Returns the detector and the scorers that cannot take the machine (a classifier's softmax).
    """
    n = len(next(iter(outputs.values())))
    ids = [machine] * n
    groups = groups_by_machine(None, ids) if groups is None else np.asarray(groups, dtype=np.int64)
    scorers, thresholds, skipped = dict(detector.scorers), dict(detector.thresholds), []
    for name, scorer in detector.scorers.items():
        if not scorer.supports_id(machine):
            skipped.append(name)
            continue
        scorers[name], thresholds[name] = _held_out_threshold(scorer, detector.thresholds[name], machine,
                                                              select_input(scorer, outputs), groups, false_alarm_rate)
    if detector.default_scorer in skipped:
        raise SsadError(f"the detector's default scorer {detector.default_scorer!r} cannot score {machine} "
                        f"(not a class of the model); it needs a scorer such as gaussian or knn")
    for name in skipped:
        log.info("scorer %s skipped for %s: it scores only the machines the model was trained on", name, machine)
    references = (detector.references.replaced(machine, outputs, groups) if detector.references is not None
                  else None)
    bands = detector.normal_bands
    if all(output_name(m) in outputs for m in MEASURES):
        bands = BandProfile.from_outputs(dict(outputs), ids) if bands is None else bands.refit(machine, dict(outputs))
    updated = type(detector)(detector.model, scorers, thresholds, detector.default_scorer, references,
                             clip_seconds=detector.clip_seconds, normal_bands=bands,
                             confirmed_anomalies=detector.confirmed_anomalies)
    return updated, skipped


def _check_name(machine: str) -> str:
    if not machine or machine != machine.strip() or any(c.isspace() or not c.isprintable() for c in machine):
        raise SsadError(f"machine name {machine!r} must be non-empty printable text without spaces, e.g. site-a/fan-7")
    return machine


def _usable(detector: DetectorState, files: Sequence[str | Path], action: str, skip_bad: bool) -> list[str]:
    """The recordings `files` stands for (folders and patterns expanded) that can be used, as `ssad score` reads
    them: every bad one named at once, or with `skip_bad` left out and listed."""
    items = expand_inputs([str(f) if isinstance(f, Path) else f for f in files])
    if not items and not items.problems:
        raise SsadError(f"{action}: no recordings given")
    batch = read_inputs(items, sample_rate=detector.model.sample_rate, min_samples=detector.model.log_mel.n_fft,
                        skip_bad=skip_bad, action=action, keep=False, problems=items.problems)
    return [str(items[k]) for k in batch.kept]


def _known(detector: DetectorState, machine: str) -> None:
    if machine not in detector.machine_ids:
        raise SsadError(f"unknown machine {machine!r}; the detector knows {detector.machine_ids or 'no machine yet'} "
                        "(a new machine is added with `ssad enroll`)")


def _resolved(detector: DetectorState, machine: str) -> str:
    """The machine `machine` names: itself, or the only machine of that type."""
    if machine in detector.machine_ids:
        return machine
    of_type = [m for m in detector.machine_ids if m.split("/")[0] == machine]
    return of_type[0] if len(of_type) == 1 else machine


def _limits(detector: DetectorState, machine: str) -> dict[str, float]:
    return {name: thr.threshold_[machine] for name, thr in detector.thresholds.items() if machine in thr.threshold_}


def _rate(detector: DetectorState, machine: str) -> float:
    return detector.thresholds[detector.default_scorer].rate_of(machine)


def _reference_count(detector: DetectorState, machine: str) -> int:
    refs = detector.references.of(machine) if detector.references is not None else {}
    return len(next(iter(refs.values()))) if refs else 0


def enroll_machine(detector: DetectorState, machine: str, files: Sequence[str | Path], *, skip_bad: bool = False,
                   progress: bool = False, false_alarm_rate: float | None = None) -> tuple[DetectorState, Update]:
    """Add a new machine from a few normal recordings, in memory: fit its scorers and thresholds.

    The thresholds aim at `false_alarm_rate` (default: the detector's) on recordings made later: they are set
    from the clips' scores with each recording held out (`ssad.audio.recordings` tells the recordings apart).
    Where its held-out scores shift between recordings, a learning period is advised (`Update.shift`, logged).
    """
    machine = _check_name(machine)
    if machine in detector.machine_ids:
        raise SsadError(f"{machine} is already known to this detector; add normal clips with "
                        f"`ssad feedback --machine {machine} --normal FILES`")
    files = _usable(detector, files, f"enrol {machine} from", skip_bad)
    if not detector.machine_ids and len(files) < FIRST_MACHINE_CLIPS:
        raise SsadError(f"{machine} would be this detector's first machine, whose thresholds come from its own "
                        f"clips alone: give at least {FIRST_MACHINE_CLIPS} normal recordings of it, not {len(files)}")
    groups = groups_by_machine(files, [machine] * len(files))
    updated, skipped = refit_machine(detector, machine, _outputs(detector, files, progress), groups,
                                     false_alarm_rate=false_alarm_rate)
    shift = updated.thresholds[updated.default_scorer].shift_of(machine)
    if updated.clip_seconds is None:
        updated.clip_seconds = typical_seconds(files)
        log.info("clip length of this detector, from %s's recordings: %g s (what `ssad monitor` scores at once)",
                 machine, updated.clip_seconds)
    count = _reference_count(updated, machine) or len(files)
    return updated, Update(None, machine, count, _limits(updated, machine), skipped, "enroll", files,
                           false_alarm_rate=_rate(updated, machine), shift=shift)


def add_feedback(detector: DetectorState, machine: str, *, normal: Sequence[str | Path] = (),
                 anomaly: Sequence[str | Path] = (), skip_bad: bool = False,
                 progress: bool = False) -> tuple[DetectorState, Update]:
    """An operator's word on recordings of a known machine, in memory: `normal` ones (false alarms) join its
    references and refit its scorers and threshold; `anomaly` ones (confirmed faults) are kept as labelled clips
    (`DetectorState.confirmed_anomalies`), which change neither."""
    if not normal and not anomaly:
        raise SsadError("feedback needs recordings: --normal FILES (false alarms) or --anomaly FILES (confirmed faults)")
    _known(detector, machine)
    updated, skipped, files, faults = detector, [], [], []
    if normal:
        if detector.references is None or machine not in detector.references.machines:
            raise SsadError(f"no stored reference clips for {machine} (the detector was saved before ssad kept them); "
                            "save it again with `ssad detector` or `ssad evaluate`")
        files = _usable(detector, normal, f"learn {machine}'s normal sound from", skip_bad)
        old, old_groups = detector.references.of(machine), detector.references.groups_of(machine)
        new = _outputs(detector, files, progress)
        outputs = {name: np.concatenate([old[name], new[name].astype(old[name].dtype)]) for name in old}
        # the false alarms are a recording of their own: the threshold sees how far it sat, and moves
        groups = np.concatenate([old_groups, np.full(len(files), old_groups.max() + 1 if len(old_groups) else 0)])
        updated, skipped = refit_machine(detector, machine, outputs, groups)
    if anomaly:
        faults = _usable(detector, anomaly, f"record faults of {machine} from", skip_bad)
        known = set(detector.confirmed_anomalies.paths_of(machine))
        again = [f for f in faults if os.path.abspath(f) in known]
        if again:
            log.info("already confirmed faults of %s, not recorded twice: %s", machine, ", ".join(again))
        faults = [f for f in faults if os.path.abspath(f) not in known]
        if not faults and not files:
            raise SsadError(f"every recording given is already a confirmed fault of {machine}")
        if faults:
            confirmed = updated.confirmed_anomalies.added(machine, _outputs(detector, faults, progress),
                                                          [os.path.abspath(f) for f in faults])
            updated = type(updated)(updated.model, updated.scorers, updated.thresholds, updated.default_scorer,
                                    updated.references, updated.clip_seconds, updated.normal_bands, confirmed)
    update = Update(None, machine, _reference_count(updated, machine), _limits(updated, machine), skipped,
                    "feedback", files, faults, len(updated.confirmed_anomalies.paths_of(machine)),
                    false_alarm_rate=_rate(updated, machine))
    return updated, update


def calibrate_machine(detector: DetectorState, machine: str, files: Sequence[str | Path], *, skip_bad: bool = False,
                      progress: bool = False) -> tuple[DetectorState, Update]:
    """A learning period, in memory, from recordings of the normal machine where it stands: its thresholds move,
    its model does not.

    The clips are scored by the detector as it is (they are new to it) and each threshold is read anew, centred on
    their scores (`AlarmThreshold.calibrated`): the level where the machine stands, the spreads from all recordings.
    """
    _known(detector, machine)
    files = _usable(detector, files, f"calibrate {machine} on", skip_bad)
    outputs = _outputs(detector, files, progress)
    groups, how = recording_groups(sorted(files))
    groups = groups[np.argsort(np.argsort(files))] if how != "blocks" else None  # back in the files' order
    thresholds = dict(detector.thresholds)
    for name, scorer in detector.scorers.items():
        if machine in scorer.ids_:
            scores = scorer.score(select_input(scorer, outputs), [machine] * len(files))
            thresholds[name] = detector.thresholds[name].calibrated(machine, scores, groups)
    updated = type(detector)(detector.model, detector.scorers, thresholds, detector.default_scorer,
                             detector.references, detector.clip_seconds, detector.normal_bands,
                             detector.confirmed_anomalies)
    return updated, Update(None, machine, _reference_count(updated, machine), _limits(updated, machine), [],
                           "calibrate", files, false_alarm_rate=_rate(updated, machine))


def _detector_folder(directory: str | Path) -> Path:
    """`directory`, when it holds a saved detector; else SsadError saying what it is (before taking its lock)."""
    directory = Path(directory)
    if not store.holds_detector(directory):
        raise SsadError(not_a_detector(directory))
    return directory


def _commit(directory: Path, updated: DetectorState, update: Update) -> Update:
    update.version = store.commit(directory, updated.save_state, update.record())
    return update


def enroll(directory: str | Path, machine: str, files: Sequence[str | Path], *, skip_bad: bool = False,
           progress: bool = False, false_alarm_rate: float | None = None) -> Update:
    """Add a new machine to the detector saved in `directory` (`enroll_machine`) as a new version."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        updated, update = enroll_machine(DetectorState.load(directory), machine, files, skip_bad=skip_bad,
                                         progress=progress, false_alarm_rate=false_alarm_rate)
        return _commit(directory, updated, update)


def calibrate(directory: str | Path, machine: str, files: Sequence[str | Path], *, skip_bad: bool = False,
              progress: bool = False) -> Update:
    """A learning period on the detector saved in `directory` (`calibrate_machine`) as a new version."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        detector = DetectorState.load(directory)
        machine = _resolved(detector, machine)
        updated, update = calibrate_machine(detector, machine, files, skip_bad=skip_bad, progress=progress)
        return _commit(directory, updated, update)


def keep_calibration(directory: str | Path, machine: str, scorer: str, thresholds: AlarmThreshold,
                     source: str) -> Update:
    """Save one scorer's threshold of `machine`, calibrated elsewhere (a monitor's learning period on `source`),
    as a new version of the detector in `directory`."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        detector = DetectorState.load(directory)
        _known(detector, machine)
        if scorer not in detector.thresholds:
            raise SsadError(f"{directory}: no scorer {scorer!r}; it has {sorted(detector.thresholds)}")
        kept = dict(detector.thresholds)
        kept[scorer] = detector.thresholds[scorer].adopted(thresholds, machine)
        updated = type(detector)(detector.model, detector.scorers, kept, detector.default_scorer,
                                 detector.references, detector.clip_seconds, detector.normal_bands,
                                 detector.confirmed_anomalies)
        update = Update(None, machine, _reference_count(updated, machine), _limits(updated, machine), [],
                        "calibrate", [source], false_alarm_rate=_rate(updated, machine))
        return _commit(directory, updated, update)


def feedback(directory: str | Path, machine: str, normal: Sequence[str | Path] = (), *,
             anomaly: Sequence[str | Path] = (), skip_bad: bool = False, progress: bool = False) -> Update:
    """Feedback on a machine of the detector saved in `directory` (`add_feedback`) as a new version."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        updated, update = add_feedback(DetectorState.load(directory), machine, normal=normal, anomaly=anomaly,
                                       skip_bad=skip_bad, progress=progress)
        return _commit(directory, updated, update)


def undo(directory: str | Path, machine: str, *, undo_enrolment: bool = False) -> store.Rollback:
    """Roll back the detector's last update, which must be of `machine` (its enrolment only with `undo_enrolment`)."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        return store.undo(directory, machine, undo_enrolment=undo_enrolment)


def redo(directory: str | Path, machine: str) -> store.Rollback:
    """Re-apply the update of `machine` undone last, if no update came since."""
    directory = _detector_folder(directory)
    with store.update_lock(directory):
        return store.redo(directory, machine)


def _outputs(detector: DetectorState, files: Sequence[str], progress: bool) -> dict[str, np.ndarray]:
    """The network's per-clip outputs of the files (and band statistics), with only the outputs the references keep."""
    outputs = clip_outputs(detector.model, files, progress=progress)
    if detector.references is not None:
        # references of no machine yet keep what the scorers take
        kept = detector.references.outputs or {scorer.input_name for scorer in detector.scorers.values()}
        keep = {*kept, *map(output_name, MEASURES)}
        outputs = {name: value for name, value in outputs.items() if name in keep}
    return outputs
