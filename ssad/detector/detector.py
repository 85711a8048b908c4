"""A trained model plus fitted scorers and thresholds: point it at recordings, get scores and decisions."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.errors import BadInputError, SsadError
from ssad.data.clips import Clip, clip_key, machine_key, machine_type_of
from ssad.data.recordings import groups_by_machine
from ssad.detector.store import current_version, reset_versions, state_dir, update_lock
from ssad.explain.bands import NORMAL_BANDS_FILE, BandProfile, band_statistics, output_name
from ssad.modelio import ClipInput, LoadedModel, load, load_model_files, save_model_files
from ssad.models.weights import UNIT_CLASSES
from ssad.scoring import Scorer, make_scorer, select_input
from ssad.scoring.held_out import held_out_scores
from ssad.scoring.thresholds import DEFAULT_FALSE_ALARM_RATE, AlarmThreshold, load_thresholds, save_thresholds

if TYPE_CHECKING:
    from ssad.explain.explanation import Explanation

__all__ = ["Detector", "DetectionResult", "References", "clip_outputs", "fit_scorers", "typical_seconds"]

log = logging.getLogger("ssad")

FORMAT_VERSION = 1
#: per-clip model outputs of each machine's normal reference clips, kept so one machine can be refitted alone
REFERENCES_FILE = "references.npz"
#: the scorer a detector uses when none is named: the first of these that the model supports
PREFERRED_SCORERS = ("gaussian", "knn", "softmax")
#: scorers any model with a Gaussian on its embeddings also offers (`--scorers floor ensemble gaussian_top`), beside
#: its own: the spectral floor on the clip's band statistics, the floor and the Gaussian standardised per ID and
#: added, and the Gaussian on the 32 leading principal directions of a machine known from more clips than the
#: embedding has dimensions, whether or not its clips drift (the classifier's own Gaussian does so only for machines
#: whose clips drift; on steady synthetic machines -3: experiments/results/quality_realistic.md)
EMBEDDING_SCORERS = {
    "floor": {"kind": "floor"},
    "ensemble": {"kind": "combined", "members": ("gaussian", "floor")},
    "gaussian_top": {"kind": "gaussian", "covariance": "auto", "components": 32},
}
#: the shipped encoder's detector, its default first: an encoder that heard only synthetic machines scores a new
#: machine better beside its spectral floor than alone (chosen on lathe_vmc and synthetic seed 1: +0.8 and +0.9
#: mean AUC over the Gaussian alone; experiments/results/cold_start.md)
PRETRAINED_SCORERS = ("ensemble", "gaussian", "knn", "floor")
#: what runs the network when scoring: torch, or onnxruntime on the graphs `ssad export` wrote
BACKENDS = ("torch", "onnx")
#: the versioned state's settings that updates may set: the clip length (an empty detector learns it at enrolment)
STATE_FILE = "state.json"
#: what scoring, explaining or monitoring a detector that knows no machine says
NO_MACHINE = ("this detector knows no machine yet: add one first with `ssad enroll --detector DIR --machine NAME "
              "FILES...` (a few normal recordings of it)")


@dataclass
class DetectionResult:
    """Scores (higher = more anomalous) and decisions (1 = anomalous) for each input, by one scorer."""

    inputs: list[str]
    machine_ids: list[str]
    scores: np.ndarray
    decisions: np.ndarray
    scorer: str

    def as_records(self) -> list[dict[str, Any]]:
        """One dict per input: path (or waveform index), machine, score, decision, scorer."""
        return [
            {"path": p, "machine": m, "score": float(s), "decision": int(d), "scorer": self.scorer}
            for p, m, s, d in zip(self.inputs, self.machine_ids, self.scores, self.decisions, strict=True)
        ]


def typical_seconds(paths: Sequence[str | Path]) -> float | None:
    """Median length in seconds of these audio files, from their headers (None when there are none)."""
    from ssad.data.audio import audio_info

    return float(np.median([audio_info(p).duration for p in paths])) if paths else None


@dataclass
class References:
    """The normal reference clips each machine's scorers were fitted on, as per-clip model outputs.

    `groups` labels each row's recording within its machine (`ssad.data.recordings`): thresholds hold out whole
    recordings. References saved without them read as contiguous blocks of each machine's rows.
    """

    outputs: dict[str, np.ndarray]
    ids: np.ndarray
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=str)
        self.groups = groups_by_machine(None, self.ids) if self.groups is None else np.asarray(self.groups, np.int64)

    @property
    def machines(self) -> list[str]:
        """Machines with stored references."""
        return sorted(set(self.ids.tolist()))

    def of(self, machine: str) -> dict[str, np.ndarray]:
        """One machine's reference outputs (empty arrays when it has none)."""
        rows = self.ids == machine
        return {name: value[rows] for name, value in self.outputs.items()}

    def groups_of(self, machine: str) -> np.ndarray:
        """One machine's recording-group labels, row by row."""
        return self.groups[self.ids == machine]

    def replaced(self, machine: str, outputs: Mapping[str, np.ndarray], groups: Sequence[int] | None = None) -> References:
        """A copy in which `machine`'s references are `outputs` (their recording groups `groups`, default blocks);
        outputs that `outputs` lacks are dropped for all.

        References of no machine yet (an empty detector's) take every output the first machine has.
        """
        keep = self.ids != machine
        n = len(next(iter(outputs.values())))
        new_groups = groups_by_machine(None, [machine] * n) if groups is None else np.asarray(groups, np.int64)
        if not len(self.ids):
            return References({name: np.asarray(value) for name, value in outputs.items()}, np.full(n, machine),
                              new_groups)
        merged = {name: np.concatenate([value[keep], np.asarray(outputs[name], dtype=value.dtype)])
                  for name, value in self.outputs.items() if name in outputs}
        return References(merged, np.concatenate([self.ids[keep], np.full(n, machine)]),
                          np.concatenate([self.groups[keep], new_groups]))

    def save(self, path: Path) -> None:
        """Plain npz: one array per output plus the machine and recording group of each row (no pickle)."""
        with atomic_path(path) as tmp:
            np.savez(tmp, ids=self.ids.astype(str), groups=self.groups,
                     **{f"output.{k}": v for k, v in self.outputs.items()})

    @classmethod
    def load(cls, path: Path) -> References | None:
        """Read `save`'s file; None when the detector was saved without references."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                ids = npz["ids"].astype(str)
                groups = npz["groups"] if "groups" in npz.files else None
                outputs = {k.removeprefix("output."): npz[k] for k in npz.files if k.startswith("output.")}
        except (OSError, ValueError, KeyError) as error:
            raise SsadError(f"{path}: unreadable reference outputs ({error})") from None
        if any(len(v) != len(ids) for v in outputs.values()) or (groups is not None and len(groups) != len(ids)):
            raise SsadError(f"{path}: reference outputs, machine ids and groups differ in length")
        return cls(outputs, ids, groups)


def _label(item: ClipInput, index: int) -> str:
    """How results and messages name an input: its path, or `waveform[i]`."""
    return str(item) if isinstance(item, (str, Path)) else f"waveform[{index}]"


def clip_outputs(model: LoadedModel, paths: Sequence[str | Path], *, cache_dir: str | Path | None = None,
                 chunk: int = 256, progress: bool = False) -> dict[str, np.ndarray]:
    """Clip-level model outputs for many files, the floor's features (`SPECTRUM`) among them.

    The outputs also hold each clip's band group statistics (`ssad.explain.bands`), which a detector
    keeps per machine so that explanations can compare a clip's spectrum with the machine's normal clips.
    Works through the files in chunks so that memory stays flat; log-mels go through the on-disk cache
    when `cache_dir` is given. Logs which files are resampled or averaged to mono on the way.
    """
    from functools import partial

    from tqdm import tqdm

    from ssad.data.audio import audio_info, log_conversions, read_clip
    from ssad.features import FeatureCache, compute_log_mels

    log_conversions([audio_info(p) for p in paths], model.sample_rate)

    read = partial(read_clip, sample_rate=model.sample_rate)
    cache = FeatureCache(cache_dir, model.log_mel.params, {"sample_rate": model.sample_rate}) if cache_dir else None
    parts: dict[str, list[np.ndarray]] = {}
    with tqdm(total=len(paths), desc="scoring clips", unit="clip", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            batch = list(paths[start : start + chunk])
            log_mels = compute_log_mels(batch, model.log_mel, read=read, cache=cache, progress=False)
            tensors = [torch.from_numpy(m) for m in log_mels]
            for name, value in model.outputs_from_log_mels(tensors).items():
                parts.setdefault(name, []).append(value)
            statistics = [band_statistics(m) for m in log_mels]
            for measure in statistics[0] if statistics else ():
                parts.setdefault(output_name(measure), []).append(
                    np.stack([s[measure] for s in statistics]).astype(np.float32))
            bar.update(len(batch))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _scorer_specs(model: LoadedModel, names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """The `make_scorer` arguments of each named scorer (default: the model's own scorers).

    A softmax scorer gets the model's class names, the machines it can score; an ensemble its members.
    """
    own = dict(type(model.module).default_scorers)
    available = own | ({n: s for n, s in EMBEDDING_SCORERS.items() if n not in own} if "gaussian" in own else {})
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


def fit_scorers(model: LoadedModel, outputs: Mapping[str, np.ndarray], ids: Sequence[str],
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


class Detector:
    """Model + fitted scorers + per-ID thresholds. Build with `Detector.fit(run, train_root)`.

    Attributes:
        model: the loaded network with its features.
        scorers: fitted scorers by name.
        thresholds: a fitted `AlarmThreshold` per scorer.
        default_scorer: the scorer `score` uses when none is named.
        clip_seconds: typical length of the clips the scorers were fitted on (None = not recorded); a live
            monitor scores windows of this length so that scores match the thresholds.
        references: each machine's normal reference outputs (None for detectors saved without them).
        normal_bands: each machine's normal band statistics, for explanations (None for detectors saved
            without them).
        version: the saved state version this detector was loaded from (0 = the base state; see `ssad.detector.store`).
    """

    def __init__(self, model: LoadedModel, scorers: Mapping[str, Scorer], thresholds: Mapping[str, AlarmThreshold],
                 default_scorer: str | None = None, references: References | None = None,
                 clip_seconds: float | None = None, normal_bands: BandProfile | None = None) -> None:
        self.model = model
        self.normal_bands = normal_bands
        self.clip_seconds = clip_seconds
        self.scorers = dict(scorers)
        self.thresholds = dict(thresholds)
        self.references = references
        self.version = 0
        preferred = [n for n in PREFERRED_SCORERS if n in self.scorers]
        self.default_scorer = default_scorer or (preferred[0] if preferred else next(iter(self.scorers)))
        if self.default_scorer not in self.scorers:
            raise SsadError(f"default scorer {self.default_scorer!r} is not one of {sorted(self.scorers)}")

    @property
    def machine_ids(self) -> list[str]:
        """The machines (`type/id`) the detector knows."""
        return sorted(self.thresholds[self.default_scorer].threshold_)

    def require_machines(self) -> list[str]:
        """The machines the detector knows; SsadError saying to enrol one when it knows none (an empty detector)."""
        if not self.machine_ids:
            raise SsadError(NO_MACHINE)
        return self.machine_ids

    @classmethod
    def empty(cls, model: LoadedModel, *, scorers: Sequence[str] | None = None, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE) -> Detector:
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
        from ssad.modelio.pretrained import load_pretrained

        return cls.empty(load_pretrained(device), scorers=scorers or PRETRAINED_SCORERS, false_alarm_rate=false_alarm_rate)

    @classmethod
    def from_outputs(cls, model: LoadedModel, outputs: Mapping[str, np.ndarray], ids: Sequence[str], *,
                     scorers: Sequence[str] | None = None, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
                     clip_seconds: float | None = None, groups: Sequence[int] | None = None) -> Detector:
        """Fit scorers and thresholds on already computed training outputs (in file order per machine).

        Each threshold aims at `false_alarm_rate` on later recordings: it is set from the clips' scores with their
        recording group held out (`groups`, a label per clip; default: contiguous blocks of each machine's clips).
        """
        fitted = fit_scorers(model, outputs, ids, scorers)
        groups = np.asarray(groups) if groups is not None else groups_by_machine(None, ids)
        thresholds = {}
        for name, scorer in fitted.items():
            held_out = held_out_scores(scorer, select_input(scorer, outputs), ids, groups)
            thresholds[name] = AlarmThreshold(false_alarm_rate, name).fit(held_out, list(ids), groups)
        references = References({k: np.asarray(v) for k, v in outputs.items()}, np.asarray(ids, dtype=str), groups)
        return cls(model, fitted, thresholds, references=references, clip_seconds=clip_seconds,
                   normal_bands=BandProfile.from_outputs(dict(outputs), ids))

    @classmethod
    def fit(cls, run: str | Path, train_root: str | Path, *, scorers: Sequence[str] | None = None,
            false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, machine_types: Sequence[str] | None = None, device: str = "cpu",
            cache_dir: str | Path | None = None, skip_bad: bool = False, progress: bool = False) -> Detector:
        """Load a run, embed the normal training clips under `train_root`, fit scorers and thresholds."""
        from ssad.data.layout import index_root, select

        model = load(run, device=device)
        clips = select(index_root(train_root, machine_types=machine_types, skip_bad=skip_bad),
                       split="train", label="normal")
        if not clips:
            raise SsadError(f"{train_root}: no normal training clips to fit the detector on")
        return cls.from_clips(model, clips, scorers=scorers, false_alarm_rate=false_alarm_rate, cache_dir=cache_dir,
                              progress=progress)

    @classmethod
    def from_clips(cls, model: LoadedModel, clips: Sequence[Clip], *, scorers: Sequence[str] | None = None,
                   false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, cache_dir: str | Path | None = None,
                   progress: bool = False) -> Detector:
        """Fit on these normal training clips (their outputs stay in the detector's `references`)."""
        outputs = clip_outputs(model, [c.path for c in clips], cache_dir=cache_dir, progress=progress)
        ids = [clip_key(c) for c in clips]
        return cls.from_outputs(model, outputs, ids, scorers=scorers, false_alarm_rate=false_alarm_rate,
                                clip_seconds=typical_seconds([c.path for c in clips]),
                                groups=groups_by_machine([c.path for c in clips], ids))

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
        from ssad.data.layout import machine_from_name

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

    def _machine_ids(self, inputs: list[ClipInput], machine_ids: str | Sequence[str] | None) -> list[str]:
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
                problems.append((_label(item, k), str(error)))
        if problems:
            raise BadInputError(problems, header="cannot tell which machine these recordings are from")
        unknown = sorted(set(result) - set(self.machine_ids))
        if unknown:
            raise SsadError(f"machine(s) {unknown} unknown to this detector (from the file names); it knows "
                            f"{self.machine_ids}; pass machine_ids to name the machine (a new machine is added "
                            "with `ssad enroll`)")
        return result

    def _read(self, items: list[ClipInput], sample_rate: int | None,
              skip_bad: bool) -> tuple[list[torch.Tensor], list[int]]:
        """Every input as a waveform at the model's rate, and the index of each kept; every bad input named.

        A file that cannot be read or is shorter than one FFT frame is a problem: all are raised together in one
        BadInputError, or, with `skip_bad`, left out and logged.
        """
        from ssad.data.audio import load_clip, log_conversions
        from ssad.data.validate import clip_problem

        rate, n_fft = self.model.sample_rate, self.model.log_mel.n_fft
        waves, kept, infos, problems = [], [], [], []
        for k, item in enumerate(items):
            if isinstance(item, (str, Path)):
                try:
                    wave, info = load_clip(item, sample_rate=rate)
                except BadInputError as error:
                    problems += error.problems
                    continue
                why = clip_problem(info, sample_rate=rate, min_samples=n_fft)
                infos.append(info)
                wave = torch.from_numpy(wave)
            else:
                wave = self.model.waveform(item, sample_rate)
                why = None if len(wave) >= n_fft else (f"too short: {len(wave)} samples, less than one FFT frame "
                                                       f"({n_fft} samples at {rate} Hz)")
            if why:
                problems.append((_label(item, k), why))
                continue
            waves.append(wave)
            kept.append(k)
        log_conversions(infos, rate)
        if problems and not skip_bad:
            raise BadInputError(problems, header=f"cannot score {len(problems)} of {len(items)} input(s) (pass "
                                                 "skip_bad=True to score the others)")
        if problems:
            log.warning("skipped %d input(s) that cannot be scored:\n%s", len(problems),
                        "\n".join(f"  {p}: {why}" for p, why in problems))
        if not waves:
            raise SsadError("nothing to score: every input was skipped")
        return waves, kept

    def score(self, inputs: ClipInput | Sequence[ClipInput], machine_ids: str | Sequence[str] | None = None, *,
              scorer: str | None = None, sample_rate: int | None = None, skip_bad: bool = False) -> DetectionResult:
        """Score recordings (paths or waveforms); machines come from file names unless `machine_ids` is given.

        A file's name may be in any folder: only its machine is read from it (`new/anomaly_id_00_*.wav` is
        ID id_00 of whichever machine has it), and a type alone names its only machine (`press`). Every
        unreadable or too short input is named at once; `skip_bad` scores the others and leaves those out.
        """
        name = scorer or self.default_scorer
        if name not in self.scorers:
            raise SsadError(f"no scorer {name!r} in this detector; it has {sorted(self.scorers)}")
        single = isinstance(inputs, (str, Path)) or getattr(inputs, "ndim", None) == 1
        items = [inputs] if single else list(inputs)
        ids = self._machine_ids(items, machine_ids)
        chosen = self.scorers[name]
        missing = sorted(set(ids) - set(chosen.ids_))
        if missing:
            raise SsadError(f"scorer {name!r} cannot score machine(s) {missing} (enrolled after training, not "
                            f"classes of the model); use {self.default_scorer!r} or another scorer that has them")
        waves, kept = self._read(items, sample_rate, skip_bad)
        ids = [ids[k] for k in kept]
        outputs = self.model.outputs(waves)
        scores = chosen.score(select_input(chosen, outputs), ids)
        decisions = self.thresholds[name].decide(scores, ids)
        labels = [_label(items[k], k) for k in kept]
        return DetectionResult(labels, ids, np.asarray(scores, dtype=np.float64), np.asarray(decisions), name)

    def explain(self, clip: ClipInput, machine: str | None = None, *, scorer: str | None = None,
                sample_rate: int | None = None, flagged: bool | None = None) -> Explanation:
        """Score one recording and say why: when in the clip, in which frequencies and what kind of change.

        The machine comes from the file name unless `machine` is given (see `score`); `flagged` overrides the decision.
        """
        from ssad.explain.explanation import explain_clip

        name = scorer or self.default_scorer
        if name not in self.scorers:
            raise SsadError(f"no scorer {name!r} in this detector; it has {sorted(self.scorers)}")
        (machine,) = self._machine_ids([clip], machine)
        if machine not in self.machine_ids or machine not in self.scorers[name].ids_:
            raise SsadError(f"machine {machine!r} unknown to this detector's {name} scorer; it knows "
                            f"{self.scorers[name].ids_}")
        return explain_clip(self, clip, machine, name, sample_rate=sample_rate, flagged=flagged)

    def save(self, directory: str | Path) -> Path:
        """Write the detector as plain files: safetensors weights, npz/JSON scorers, JSON thresholds.

        This is a new base state, written under the folder's update lock: its files replace an earlier
        detector's one by one, each atomically, and only then are that detector's versions, its ONNX export
        and the reference files this one has none of removed (they belong to the detector just replaced).
        """
        import shutil

        from ssad.modelio.onnx import ONNX_DIR

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {"format_version": FORMAT_VERSION, "default_scorer": self.default_scorer,
                    "scorers": list(self.scorers)}
        with update_lock(directory):
            save_model_files(self.model, directory)
            self.save_state(directory)
            write_text_atomic(directory / "detector.json", json.dumps(manifest, indent=2))
            reset_versions(directory)
            shutil.rmtree(directory / ONNX_DIR, ignore_errors=True)
            for name, kept in ((REFERENCES_FILE, self.references), (NORMAL_BANDS_FILE, self.normal_bands),
                               (STATE_FILE, self.clip_seconds)):
                if kept is None:
                    (directory / name).unlink(missing_ok=True)
        self.version = 0
        return directory

    def save_state(self, folder: str | Path) -> None:
        """Write what updates change (scorers, thresholds, references) into `folder`: a base state or a version."""
        folder = Path(folder)
        for name, scorer in self.scorers.items():
            scorer.save(folder / "scorers" / name)
        save_thresholds(self.thresholds, folder / "thresholds.json")
        if self.references is not None:
            self.references.save(folder / REFERENCES_FILE)
        if self.normal_bands is not None:
            self.normal_bands.save(folder / NORMAL_BANDS_FILE)
        if self.clip_seconds is not None:
            write_text_atomic(folder / STATE_FILE, json.dumps({"clip_seconds": self.clip_seconds}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", backend: str = "torch") -> Detector:
        """Read a detector written by `save`, at its current version; never unpickles anything.

        `backend="onnx"` runs the network exported by `ssad export` with onnxruntime instead of torch.
        """
        if backend not in BACKENDS:
            raise SsadError(f"backend {backend!r} is not one of {list(BACKENDS)}")
        directory = Path(directory)
        manifest_path = directory / "detector.json"
        if not manifest_path.is_file():
            raise SsadError(f"{directory}: not a saved ssad detector (no detector.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SsadError(f"{directory}: detector format {manifest.get('format_version')} is not {FORMAT_VERSION}")
        model = load_model_files(directory, device)
        if backend == "onnx":
            from ssad.modelio.onnx import ONNX_DIR, OnnxModel

            model = OnnxModel(model, directory / ONNX_DIR)
        version = current_version(directory)
        state = state_dir(directory, version)
        scorers = {name: Scorer.load(state / "scorers" / name) for name in manifest["scorers"]}
        thresholds = load_thresholds(state / "thresholds.json")
        settings = json.loads((state / STATE_FILE).read_text()) if (state / STATE_FILE).is_file() else manifest
        detector = cls(model, scorers, thresholds, manifest["default_scorer"], References.load(state / REFERENCES_FILE),
                       settings.get("clip_seconds"), BandProfile.load(state / NORMAL_BANDS_FILE))
        detector.version = version
        return detector
