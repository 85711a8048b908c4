"""A trained model plus fitted scorers and thresholds: point it at recordings, get scores and decisions."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ssad.detector.enrollment as enrollment
from ssad.audio.clips import Clip, clip_key, machine_key, machine_type_of
from ssad.audio.inputs import expand_inputs, input_label, read_inputs
from ssad.audio.recordings import groups_by_machine
from ssad.core.errors import BadInputError, SsadError
from ssad.detector.state import (
    CONFIRMED_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    REFERENCES_FILE,
    STATE_FILE,
    DetectorState,
    References,
)
from ssad.detector.store import POINTER_FILE, VERSIONS_DIR, describe_detector, write_detector
from ssad.encoder import ClipInput, Encoder, load, save_model_files
from ssad.encoder.file_outputs import clip_outputs, typical_seconds
from ssad.features.bands import NORMAL_BANDS_FILE, BandProfile
from ssad.models.files import MODEL_FILES, UNIT_CLASSES
from ssad.models.runs import unseen_clips
from ssad.scoring import Scorer, make_scorer, select_input
from ssad.scoring.catalogue import PRETRAINED_SCORERS, offered_scorers
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.thresholds import DEFAULT_FALSE_ALARM_RATE, AlarmThreshold

__all__ = ["Detector", "DetectionResult", "References", "clip_outputs", "fit_scorers", "typical_seconds"]

log = logging.getLogger("ssad")


@dataclass
class DetectionResult:
    """Scores (higher = more anomalous), the threshold each was judged by and decisions (1 = anomalous: the score
    is above its threshold), for each input, by one scorer."""

    inputs: list[str]
    machine_ids: list[str]
    scores: np.ndarray
    decisions: np.ndarray
    scorer: str
    thresholds: np.ndarray | None = None

    @property
    def margins(self) -> np.ndarray:
        """Each score minus its threshold: positive = above it (anomalous), negative = how far below."""
        return self.scores - self.thresholds

    def as_records(self) -> list[dict[str, Any]]:
        """One dict per input: path (or waveform index), machine, score, threshold, margin, decision, scorer."""
        thresholds = self.thresholds if self.thresholds is not None else np.full(len(self.scores), np.nan)
        return [
            {"path": p, "machine": m, "score": float(s), "threshold": float(t), "margin": float(s - t),
             "decision": int(d), "scorer": self.scorer}
            for p, m, s, t, d in zip(self.inputs, self.machine_ids, self.scores, thresholds, self.decisions, strict=True)
        ]


def _scorer_specs(model: Encoder, names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The `make_scorer` arguments of each named scorer (default: the model's own scorers).

    A softmax scorer gets the model's class names, the machines it can score; an ensemble its members.
    """
    own = dict(type(model.module).default_scorers)
    available = offered_scorers(own)
    names = list(names or own)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SsadError(f"scorer(s) {unknown} do not apply to {type(model.module).__name__}; "
                        f"available: {sorted(available)}")
    specs = {name: dict(available[name]) for name in names}
    for spec in specs.values():
        if spec["kind"] == "softmax":
            spec["class_names"] = model.class_names
        if spec["kind"] == "combined":
            spec["members"] = {m: make_scorer(**available[m]) for m in spec["members"]}
    return specs


def fit_scorers(model: Encoder, outputs: Mapping[str, np.ndarray], ids: Sequence[str],
                names: Sequence[str] | None = None) -> dict[str, Scorer]:
    """Fit the named scorers (default: every scorer the model supports) on normal training outputs."""
    scorers: dict[str, Scorer] = {}
    for name, spec in _scorer_specs(model, names).items():
        kind = spec.pop("kind")
        if kind == "softmax" and model.metadata.get(UNIT_CLASSES):
            log.info("scorer softmax left out: the shipped encoder's classes are units of its pretraining corpus, "
                     "not these machines, whatever their names")
            continue
        scorer = make_scorer(kind, **spec)
        if kind == "softmax":
            missing = sorted(i for i in set(ids) if not scorer.supports_id(i))
            if missing:
                log.warning("scorer softmax skipped: machine(s) %s are not classes of the model", missing)
                continue
        scorers[name] = scorer.fit(select_input(scorer, outputs), list(ids))
    if not scorers:
        raise SsadError("no scorer could be fitted")
    return scorers


class Detector(DetectorState):
    """Model + fitted scorers + per-ID thresholds. Build with `Detector.fit(run, train_root)`, `Detector.pretrained()`
    or `Detector.load(folder)`; see `DetectorState` for what it holds. A detector loaded from or saved to a folder
    commits its updates there (`enroll`, `feedback`, `undo`, `redo`), each as a new version.
    """


    @classmethod
    def empty(cls, model: Encoder, *, scorers: Sequence[str] | None = None, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE) -> Detector:
        """A detector with a network and no machine yet: `ssad enroll` adds each machine to it.

        Its scorers are the model's that can take any machine (named in `scorers`, the first the default; else
        all), fitted on none; a classifier's softmax scores only the classes it was trained on, so it is left out.
        """
        silence = torch.zeros(model.log_mel.n_mels, model.window_frames, device=model.device)
        no_clips = {name: value[:0] for name, value in model.outputs_from_log_mels([silence]).items()}
        fitted: dict[str, Scorer] = {}
        for name, spec in _scorer_specs(model, scorers).items():
            scorer = make_scorer(spec.pop("kind"), **spec)
            try:
                fitted[name] = scorer.fit_empty(select_input(scorer, no_clips))
            except (SsadError, ValueError) as error:
                if scorers:
                    raise SsadError(f"scorer {name} cannot start without machines: {error}") from None
                log.info("scorer %s left out: %s", name, error)
        if not fitted:
            raise SsadError(f"no scorer of {type(model.module).__name__} can start without machines")
        thresholds = {name: AlarmThreshold(false_alarm_rate, name).fit_empty() for name in fitted}
        return cls(model, fitted, thresholds, default_scorer=next(iter(fitted)) if scorers else None,
                   references=References({}, np.empty(0, dtype=str)))

    @classmethod
    def pretrained(cls, *, scorers: Sequence[str] | None = None, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
                   device: str = "cpu") -> Detector:
        """An empty detector (`empty`) on the encoder shipped with ssad: no training, no data; enrol machines next.

        Default scorers: `PRETRAINED_SCORERS`, the floor+Gaussian ensemble first.
        """
        from ssad.encoder.pretrained import load_pretrained

        return cls.empty(load_pretrained(device), scorers=scorers or PRETRAINED_SCORERS, false_alarm_rate=false_alarm_rate)

    @classmethod
    def from_outputs(cls, model: Encoder, outputs: Mapping[str, np.ndarray], ids: Sequence[str], *,
                     scorers: Sequence[str] | None = None, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
                     clip_seconds: float | None = None, groups: Sequence[int] | None = None,
                     unseen: Sequence[bool] | None = None) -> Detector:
        """Fit scorers and thresholds on already computed training outputs (in file order per machine).

        Each threshold aims at `false_alarm_rate` on later recordings: it is set from the clips' scores with their
        recording group held out (`groups`, a label per clip; default: contiguous blocks of each machine's clips),
        and from how far the clips the network never trained on (`unseen`, a run's validation clips) sit above.
        """
        fitted = fit_scorers(model, outputs, ids, scorers)
        groups = np.asarray(groups) if groups is not None else groups_by_machine(None, ids)
        thresholds = {}
        for name, scorer in fitted.items():
            held_out = held_out_scores(scorer, select_input(scorer, outputs), ids, groups)
            thresholds[name] = AlarmThreshold(false_alarm_rate, name).fit(held_out, list(ids), groups, unseen)
        references = References({k: np.asarray(v) for k, v in outputs.items()}, np.asarray(ids, dtype=str), groups)
        return cls(model, fitted, thresholds, references=references, clip_seconds=clip_seconds,
                   normal_bands=BandProfile.from_outputs(dict(outputs), ids))

    @classmethod
    def fit(cls, run: str | Path, train_root: str | Path, *, scorers: Sequence[str] | None = None,
            false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, machine_types: Sequence[str] | None = None, device: str = "cpu",
            cache_dir: str | Path | None = None, skip_bad: bool = False, progress: bool = False) -> Detector:
        """Load a run, embed the normal training clips under `train_root`, fit scorers and thresholds."""
        from ssad.audio.layout import index_root, select

        model = load(run, device=device)
        clips = select(index_root(train_root, machine_types=machine_types, skip_bad=skip_bad),
                       split="train", label="normal")
        if not clips:
            raise SsadError(f"{train_root}: no normal training clips to fit the detector on")
        return cls.from_clips(model, clips, scorers=scorers, false_alarm_rate=false_alarm_rate, cache_dir=cache_dir,
                              unseen=unseen_clips(run),
                              progress=progress)

    @classmethod
    def from_clips(cls, model: Encoder, clips: Sequence[Clip], *, scorers: Sequence[str] | None = None,
                   false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, cache_dir: str | Path | None = None,
                   progress: bool = False, unseen: set[str] | None = None) -> Detector:
        """Fit on these normal training clips (their outputs stay in the detector's `references`); `unseen`: the
        resolved paths of those the network never trained on (`ssad.models.runs.unseen_clips`)."""
        outputs = clip_outputs(model, [c.path for c in clips], cache_dir=cache_dir, progress=progress)
        ids = [clip_key(c) for c in clips]
        mask = None if unseen is None else [str(Path(c.path).resolve()) in unseen for c in clips]
        return cls.from_outputs(model, outputs, ids, scorers=scorers, false_alarm_rate=false_alarm_rate,
                                clip_seconds=typical_seconds([c.path for c in clips]),
                                groups=groups_by_machine([c.path for c in clips], ids), unseen=mask)

    def resolve_machine(self, name: str) -> str:
        """The machine `name` means: itself when known, else the only machine of that type (`press` for `press/id_00`)."""
        known = self.require_machines()
        if name in known:
            return name
        of_type = [m for m in known if machine_type_of(m) == name]
        if len(of_type) == 1:
            return of_type[0]
        if of_type:
            raise SsadError(f"machine {name!r} is {len(of_type)} machines of this detector ({', '.join(of_type)}); "
                            "name one")
        raise SsadError(f"machine {name!r} is unknown to this detector; it knows {', '.join(known)} (a new machine "
                        "is added with `ssad enroll`)")

    def _machine_of(self, item: ClipInput) -> str:
        """The machine of one input, from its file name and folders where they say, else the detector's only one.

        Raises SsadError saying why when neither tells.
        """
        from ssad.audio.layout import machine_from_name

        known = self.machine_ids
        named = machine_from_name(item) if isinstance(item, (str, Path)) else None
        if named is None:
            if len(known) == 1:
                return known[0]
            raise SsadError(f"cannot tell which machine it is from its name; pass machine_ids (one of "
                            f"{', '.join(known)})")
        machine_type, machine_id = named
        if machine_type is not None:
            return machine_key(machine_type, machine_id)
        with_id = [m for m in known if m.rpartition("/")[2] == machine_id]
        if len(with_id) == 1:
            return with_id[0]
        which = f"{len(with_id)} machines have it ({', '.join(with_id)})" if with_id else "no machine has it"
        raise SsadError(f"its name says {machine_id} but its folders not the machine type, and {which}; pass "
                        f"machine_ids (one of {', '.join(known)})")

    def machines_for(self, inputs: Sequence[ClipInput], machine_ids: str | Sequence[str] | None = None) -> list[str]:
        """Each input's machine: the names given (resolved), else what file names say; every unknown one named."""
        self.require_machines()
        if isinstance(machine_ids, str):
            return [self.resolve_machine(machine_ids)] * len(inputs)
        if machine_ids is not None:
            if len(machine_ids) != len(inputs):
                raise SsadError(f"{len(machine_ids)} machine ids for {len(inputs)} inputs")
            return [self.resolve_machine(m) for m in machine_ids]
        result, problems = [], []
        for k, item in enumerate(inputs):
            try:
                result.append(self._machine_of(item))
            except SsadError as error:
                problems.append((input_label(item, k), str(error)))
        if problems:
            raise BadInputError(problems, header="cannot tell which machine these recordings are from")
        unknown = sorted(set(result) - set(self.machine_ids))
        if unknown:
            raise SsadError(f"machine(s) {unknown} unknown to this detector (from the file names); it knows "
                            f"{self.machine_ids}; pass machine_ids to name the machine (a new machine is added "
                            "with `ssad enroll`)")
        return result

    def score(self, inputs: ClipInput | Sequence[ClipInput], machine_ids: str | Sequence[str] | None = None, *,
              scorer: str | None = None, sample_rate: int | None = None, skip_bad: bool = False) -> DetectionResult:
        """Score recordings (paths, folders, glob patterns or waveforms); machines come from file names unless
        `machine_ids` is given.

        A folder stands for the `.wav` files directly in it, a pattern (`new/*.wav`) for the files it matches. A
        file's name may be in any folder: only its machine is read from it (`new/anomaly_id_00_*.wav` is ID id_00
        of whichever machine has it), and a type alone names its only machine (`press`). Every unreadable or too
        short input is named at once; `skip_bad` scores the others and leaves those out.
        """
        name = self.scorer_name(scorer)
        single = isinstance(inputs, (str, Path)) or getattr(inputs, "ndim", None) == 1
        items = expand_inputs([inputs] if single else list(inputs))
        if machine_ids is not None and not isinstance(machine_ids, str):  # one per input given, folders included
            given = 1 if single else len(inputs)
            if len(machine_ids) != given:
                raise SsadError(f"{len(machine_ids)} machine ids for {given} inputs")
            machine_ids = [machine_ids[k] for k in items.origins]
        ids = self.machines_for(list(items), machine_ids)
        chosen = self.scorers[name]
        missing = sorted(set(ids) - set(chosen.ids_))
        if missing:
            raise SsadError(f"scorer {name!r} cannot score machine(s) {missing} (enrolled after training, not "
                            f"classes of the model); use {self.default_scorer!r} or another scorer that has them")
        rate = self.model.sample_rate
        batch = read_inputs(items, sample_rate=rate, min_samples=self.model.log_mel.n_fft, skip_bad=skip_bad,
                            waveform=lambda wave: self.model.waveform(wave, sample_rate), problems=items.problems)
        ids = [ids[k] for k in batch.kept]
        outputs = self.model.outputs([torch.as_tensor(w) for w in batch.waves])
        scores = np.asarray(chosen.score(select_input(chosen, outputs), ids), dtype=np.float64)
        limits = self.thresholds[name].threshold_
        thresholds = np.array([limits[i] for i in ids], dtype=np.float64)
        decisions = np.asarray(self.thresholds[name].decide(scores, ids))
        labels = [input_label(items[k], items.origins[k]) for k in batch.kept]
        return DetectionResult(labels, ids, scores, decisions, name, thresholds)

    def save(self, directory: str | Path, *, replace: bool = False, keep_replaced: bool = True) -> Path:
        """Write the detector as plain files (safetensors weights, npz/JSON scorers, JSON thresholds): a new base state.

        A folder that already holds a detector is refused, naming its machines and version, unless `replace`:
        then that detector, its versions, feedback and confirmed faults included, is first moved whole into
        `directory/replaced/<time>/` (`keep_replaced`, the default) or removed, and the log says where it went.
        The new files are written into a temporary folder first, so an interrupted save leaves the old detector
        or no detector (the old one then in `replaced/`), never a mix of the two.
        """
        from ssad.encoder.onnx import ONNX_DIR

        directory = Path(directory)
        old = describe_detector(directory) if replace and (directory / MANIFEST_FILE).is_file() else None

        def write(folder: Path) -> None:
            save_model_files(self.model, folder)
            self.save_state(folder)
            manifest = {"format_version": FORMAT_VERSION, "default_scorer": self.default_scorer,
                        "scorers": list(self.scorers)}
            (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))

        extras = [*MODEL_FILES, "scorers", "thresholds.json", REFERENCES_FILE, NORMAL_BANDS_FILE, CONFIRMED_FILE,
                  STATE_FILE, POINTER_FILE, VERSIONS_DIR, ONNX_DIR]
        kept = write_detector(directory, write, extras=extras, replace=replace, keep_replaced=keep_replaced)
        if old is not None:
            where = (f"kept whole in {kept}: use it with --detector {kept}, or move its files back into {directory} "
                     "to restore it") if kept else "removed"
            log.warning("%s: replaced the detector that was there (%s); it is %s", directory, old, where)
        self.version, self.directory = 0, directory
        return directory

    def enroll(self, machine: str, files: str | Path | Sequence[str | Path], *, skip_bad: bool = False,
               progress: bool = False, false_alarm_rate: float | None = None) -> Detector:
        """Add a new machine from a few normal recordings (files, folders or patterns, as `score` takes them).

        Only the machine's scorers and thresholds are fitted; every other machine keeps its state. The thresholds
        aim at `false_alarm_rate` (default: the detector's) on recordings made later. Returns the updated
        detector; one loaded from or saved to a folder commits the update there as a new version (what `ssad
        enroll` does), one only in memory stays so.
        """
        files = [files] if isinstance(files, (str, Path)) else list(files)
        if self.directory is None:
            updated, update = enrollment.enroll_machine(self, machine, files, skip_bad=skip_bad, progress=progress,
                                                        false_alarm_rate=false_alarm_rate)
            updated.last_update = update
        else:
            updated = self._reloaded(enrollment.enroll(self.directory, machine, files, skip_bad=skip_bad,
                                                       progress=progress, false_alarm_rate=false_alarm_rate))
        shift = updated.last_update.shift
        if shift is not None and shift.advised:  # `ssad enroll` prints it in its report; a program is told here
            log.warning("%s: %s", machine, shift.format())
        return updated

    def calibrate(self, machine: str, files: str | Path | Sequence[str | Path], *, skip_bad: bool = False,
                  progress: bool = False) -> Detector:
        """A learning period: recordings of the normal machine made where it stands set its thresholds there
        (its model is unchanged). Returns the updated detector, committed as `enroll` is (`ssad calibrate`)."""
        files = [files] if isinstance(files, (str, Path)) else list(files)
        machine = self.resolve_machine(machine)
        if self.directory is None:
            updated, update = enrollment.calibrate_machine(self, machine, files, skip_bad=skip_bad, progress=progress)
            updated.last_update = update
            return updated
        return self._reloaded(enrollment.calibrate(self.directory, machine, files, skip_bad=skip_bad,
                                                   progress=progress))

    def feedback(self, machine: str, *, normal: Sequence[str | Path] = (), anomaly: Sequence[str | Path] = (),
                 skip_bad: bool = False, progress: bool = False) -> Detector:
        """An operator's word on recordings of a known machine: `normal` ones (false alarms) join its normal
        references and refit it; `anomaly` ones (confirmed faults) are kept as labelled clips
        (`confirmed_anomalies`) and change nothing else. Returns the updated detector, committed as `enroll` is."""
        if self.directory is None:
            updated, update = enrollment.add_feedback(self, machine, normal=list(normal), anomaly=list(anomaly),
                                                      skip_bad=skip_bad, progress=progress)
            updated.last_update = update
            return updated
        return self._reloaded(enrollment.feedback(self.directory, machine, list(normal), anomaly=list(anomaly),
                                                  skip_bad=skip_bad, progress=progress))

    def undo(self, machine: str, *, undo_enrolment: bool = False) -> Detector:
        """Roll the detector's folder back by one update, which must be of `machine` (an enrolment only with
        `undo_enrolment`); returns the detector as it is now. Only a detector in a folder has versions to undo."""
        return self._reloaded(enrollment.undo(self._folder("undo"), machine, undo_enrolment=undo_enrolment))

    def redo(self, machine: str) -> Detector:
        """Re-apply the update of `machine` undone last, if no update came since; returns the detector as it is now."""
        return self._reloaded(enrollment.redo(self._folder("redo"), machine))

    def _folder(self, what: str) -> Path:
        if self.directory is None:
            raise SsadError(f"{what} needs a detector saved in a folder (its versions live there): save() or "
                            "load() it first")
        return self.directory

    def _reloaded(self, update: Any) -> Detector:
        """This detector's folder as it is after `update` (an `Update` or a `Rollback`), loaded as this one was."""
        fresh = type(self).load(self.directory, **self._load_options)
        fresh.last_update = update
        return fresh
