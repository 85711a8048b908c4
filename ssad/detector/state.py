"""What a detector knows, and what each of its saved versions holds: the model, fitted scorers and thresholds,
each machine's normal reference clips and the faults an operator confirmed, read and written as plain files.

`DetectorState` is the part of `ssad.Detector` that enrolment and feedback change (`ssad.detector.enrollment`
works on it, below `Detector`, so that `Detector.enroll` can call it); `Detector` adds fitting, scoring and saving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ssad.audio.recordings import groups_by_machine
from ssad.core.atomic import atomic_path, write_text_atomic
from ssad.core.errors import SsadError, reading
from ssad.detector.store import MANIFEST_FILE, REPLACED_DIR, current_version, state_dir
from ssad.encoder import Encoder, load_model_files
from ssad.features.bands import NORMAL_BANDS_FILE, BandProfile
from ssad.scoring import Scorer
from ssad.scoring.catalogue import PREFERRED_SCORERS
from ssad.scoring.thresholds import AlarmThreshold, load_thresholds, save_thresholds

__all__ = ["BACKENDS", "CONFIRMED_FILE", "ConfirmedAnomalies", "DetectorState", "FORMAT_VERSION", "MANIFEST_FILE",
           "NO_MACHINE", "REFERENCES_FILE", "References", "STATE_FILE", "not_a_detector"]

FORMAT_VERSION = 1
#: per-clip model outputs of each machine's normal reference clips, kept so one machine can be refitted alone
REFERENCES_FILE = "references.npz"
#: clips an operator confirmed as faults (`ssad feedback --anomaly`): their model outputs, machines and paths
CONFIRMED_FILE = "confirmed_anomalies.npz"
#: the versioned state's settings that updates may set: the clip length (an empty detector learns it at enrolment)
STATE_FILE = "state.json"
#: what runs the network when scoring: torch, or onnxruntime on the graphs `ssad export` wrote
BACKENDS = ("torch", "onnx")
#: what scoring, explaining or monitoring a detector that knows no machine says
NO_MACHINE = ("this detector knows no machine yet: add one first with `ssad enroll --detector DIR --machine NAME "
              "FILES...` (a few normal recordings of it)")


def _save_npz(path: Path, ids: np.ndarray, outputs: Mapping[str, np.ndarray], **extra: np.ndarray) -> None:
    """Plain npz: one array per output plus the machine of each row and any `extra` arrays (no pickle)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, ids=ids.astype(str), **extra, **{f"output.{k}": v for k, v in outputs.items()})


def _load_npz(path: Path, what: str, extra: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
    """`_save_npz`'s file: machine ids, outputs and the `extra` arrays, each row checked to match."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            ids = npz["ids"].astype(str)
            outputs = {k.removeprefix("output."): npz[k] for k in npz.files if k.startswith("output.")}
            more = [npz[name] for name in extra]
    except (OSError, ValueError, KeyError) as error:
        raise SsadError(f"{path}: unreadable {what} ({error})") from None
    if any(len(v) != len(ids) for v in [*outputs.values(), *more]):
        raise SsadError(f"{path}: {what} and machine ids differ in length")
    return ids, outputs, more


@dataclass
class References:
    """The normal reference clips each machine's scorers were fitted on, as per-clip model outputs.

    `groups` labels each row's recording within its machine (`ssad.audio.recordings`): thresholds hold out whole
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

    def replaced(self, machine: str, outputs: Mapping[str, np.ndarray],
                 groups: np.ndarray | None = None) -> References:
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
        _save_npz(path, self.ids, self.outputs, groups=self.groups)

    @classmethod
    def load(cls, path: Path) -> References | None:
        """Read `save`'s file; None when the detector was saved without references."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                has_groups = "groups" in npz.files
        except (OSError, ValueError) as error:
            raise SsadError(f"{path}: unreadable reference outputs ({error})") from None
        ids, outputs, more = _load_npz(path, "reference outputs", ("groups",) if has_groups else ())
        return cls(outputs, ids, more[0] if more else None)


@dataclass
class ConfirmedAnomalies:
    """Clips an operator confirmed as faults of a machine (`ssad feedback --anomaly`): per-clip model outputs and
    the recordings' paths. They are labels kept beside the machine's normal references, which they do not change."""

    outputs: dict[str, np.ndarray]
    ids: np.ndarray
    paths: np.ndarray

    @classmethod
    def empty(cls) -> ConfirmedAnomalies:
        """No confirmed fault yet."""
        return cls({}, np.empty(0, dtype=str), np.empty(0, dtype=str))

    @property
    def machines(self) -> list[str]:
        """Machines with confirmed faults."""
        return sorted(set(self.ids.tolist()))

    def of(self, machine: str) -> dict[str, np.ndarray]:
        """One machine's confirmed faults' outputs (empty arrays when it has none)."""
        rows = self.ids == machine
        return {name: value[rows] for name, value in self.outputs.items()}

    def paths_of(self, machine: str) -> list[str]:
        """The recordings of one machine's confirmed faults, in the order they were confirmed."""
        return self.paths[self.ids == machine].tolist()

    def added(self, machine: str, outputs: Mapping[str, np.ndarray], paths: list[str]) -> ConfirmedAnomalies:
        """A copy with these clips of `machine` appended (outputs the others lack are dropped, as for references)."""
        n = len(paths)
        if not len(self.ids):
            return ConfirmedAnomalies({k: np.asarray(v) for k, v in outputs.items()}, np.full(n, machine),
                                      np.asarray(paths, dtype=str))
        merged = {name: np.concatenate([value, np.asarray(outputs[name], dtype=value.dtype)])
                  for name, value in self.outputs.items() if name in outputs}
        return ConfirmedAnomalies(merged, np.concatenate([self.ids, np.full(n, machine)]),
                                  np.concatenate([self.paths, np.asarray(paths, dtype=str)]))

    def save(self, path: Path) -> None:
        """Plain npz: one array per output, the machine and the path of each clip (no pickle)."""
        _save_npz(path, self.ids, self.outputs, paths=self.paths.astype(str))

    @classmethod
    def load(cls, path: Path) -> ConfirmedAnomalies:
        """Read `save`'s file; empty when the detector has no confirmed fault."""
        if not path.is_file():
            return cls.empty()
        ids, outputs, (paths,) = _load_npz(path, "confirmed anomalies", ("paths",))
        return cls(outputs, ids, paths.astype(str))


_State = TypeVar("_State", bound="DetectorState")


def not_a_detector(directory: Path) -> str:
    """Why `directory` is no saved detector, in words that say what to check."""
    where = f" (relative to {os.getcwd()})" if not directory.is_absolute() else ""
    if not directory.exists():
        return f"no such folder: {directory}{where}"
    if not directory.is_dir():
        return f"{directory} is a file, not a saved ssad detector's folder"
    hints = []
    if (directory / "detector" / MANIFEST_FILE).is_file():
        hints.append(f"did you mean {directory / 'detector'}, the detector `ssad evaluate` saved there?")
    replaced = sorted((directory / REPLACED_DIR).glob("*/" + MANIFEST_FILE))
    if replaced:
        hints.append(f"the detector replaced here last is in {replaced[-1].parent}")
    return (f"{directory} is a folder but not a saved ssad detector (no {MANIFEST_FILE}); make one with `ssad "
            "detector --out DIR` or `ssad evaluate` (OUT/detector)" + "".join(f"; {h}" for h in hints))


class DetectorState:
    """Model + fitted scorers + per-machine thresholds, references and confirmed faults, as `ssad.Detector` holds them.

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
        confirmed_anomalies: the clips an operator confirmed as faults, per machine (`ssad feedback --anomaly`).
        directory: the folder the detector was loaded from or saved to (None for one only in memory); updates
            (`enroll`, `feedback`, `undo`, `redo`) are committed there as new versions.
        version: the saved state version this detector was loaded from (0 = the base state; see `ssad.detector.store`).
        last_update: what the update that gave this detector did (an `Update` or a `Rollback`), or None.
    """

    def __init__(self, model: Encoder, scorers: Mapping[str, Scorer], thresholds: Mapping[str, AlarmThreshold],
                 default_scorer: str | None = None, references: References | None = None,
                 clip_seconds: float | None = None, normal_bands: BandProfile | None = None,
                 confirmed_anomalies: ConfirmedAnomalies | None = None) -> None:
        self.model = model
        self.normal_bands = normal_bands
        self.clip_seconds = clip_seconds
        self.scorers = dict(scorers)
        self.thresholds = dict(thresholds)
        self.references = references
        self.confirmed_anomalies = confirmed_anomalies if confirmed_anomalies is not None else ConfirmedAnomalies.empty()
        self.version = 0
        self.directory: Path | None = None
        self.last_update: Any = None
        self._load_options: dict[str, str] = {}
        preferred = [n for n in PREFERRED_SCORERS if n in self.scorers]
        self.default_scorer = default_scorer or (preferred[0] if preferred else next(iter(self.scorers)))
        if self.default_scorer not in self.scorers:
            raise SsadError(f"default scorer {self.default_scorer!r} is not one of {sorted(self.scorers)}")

    @property
    def machine_ids(self) -> list[str]:
        """The machines (`type/id`) the detector knows."""
        return sorted(self.thresholds[self.default_scorer].threshold_)

    def scorer_name(self, scorer: str | None = None) -> str:
        """The scorer asked for (None: the default one); SsadError naming the ones there are when it has no such."""
        name = scorer or self.default_scorer
        if name not in self.scorers:
            raise SsadError(f"no scorer {name!r} in this detector; it has {sorted(self.scorers)}")
        return name

    def require_machines(self) -> list[str]:
        """The machines the detector knows; SsadError saying to enrol one when it knows none (an empty detector)."""
        if not self.machine_ids:
            raise SsadError(NO_MACHINE)
        return self.machine_ids

    def list_confirmed_anomalies(self, machine: str | None = None) -> list[dict[str, str]]:
        """The confirmed faults (`ssad feedback --anomaly`) of one machine, or of every machine: machine and path."""
        found = self.confirmed_anomalies
        machines = [machine] if machine is not None else found.machines
        return [{"machine": m, "path": p} for m in machines for p in found.paths_of(m)]

    def save_state(self, folder: str | Path) -> None:
        """Write what updates change (scorers, thresholds, references, confirmed faults) into `folder`: a base
        state or a version."""
        folder = Path(folder)
        for name, scorer in self.scorers.items():
            scorer.save(folder / "scorers" / name)
        save_thresholds(self.thresholds, folder / "thresholds.json")
        if self.references is not None:
            self.references.save(folder / REFERENCES_FILE)
        if self.normal_bands is not None:
            self.normal_bands.save(folder / NORMAL_BANDS_FILE)
        if len(self.confirmed_anomalies.ids):
            self.confirmed_anomalies.save(folder / CONFIRMED_FILE)
        if self.clip_seconds is not None:
            write_text_atomic(folder / STATE_FILE, json.dumps({"clip_seconds": self.clip_seconds}, indent=2))

    @classmethod
    def load(cls: type[_State], directory: str | Path, device: str = "cpu", backend: str = "torch") -> _State:
        """Read a detector written by `save`, at its current version; never unpickles anything.

        `backend="onnx"` runs the network exported by `ssad export` with onnxruntime instead of torch.
        """
        if backend not in BACKENDS:
            raise SsadError(f"backend {backend!r} is not one of {list(BACKENDS)}")
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise SsadError(not_a_detector(directory))
        manifest = read_manifest(manifest_path)
        model = load_model_files(directory, device)
        if backend == "onnx":
            from ssad.encoder.onnx import ONNX_DIR, OnnxModel

            model = OnnxModel(model, directory / ONNX_DIR)
        version, parts = read_state(directory, manifest)
        detector = cls(model, *parts)
        detector.version = version
        detector.directory = directory
        detector._load_options = {"device": device, "backend": backend}
        return detector


def read_manifest(path: Path) -> dict[str, Any]:
    """A detector's manifest (`detector.json`), checked: format version, scorer names, default scorer."""
    with reading(path, "detector manifest"):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise SsadError(f"{path.parent}: detector format {manifest.get('format_version')} is not {FORMAT_VERSION}")
        scorers, default = manifest["scorers"], manifest["default_scorer"]
        if not isinstance(scorers, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                                    for n in scorers):
            raise TypeError(f"scorers must be a list of names, not {scorers!r}")
        if not isinstance(default, str):
            raise TypeError(f"default_scorer must be a name, not {default!r}")
    return manifest


def read_state(directory: Path, manifest: Mapping[str, Any]) -> tuple[int, tuple]:
    """The current version of a detector folder and what it holds besides the network, in `DetectorState`'s order
    after the model: scorers, thresholds, default scorer, references, clip length, band profile, confirmed faults.
    A damaged file raises SsadError naming it."""
    version = current_version(directory)
    state = state_dir(directory, version)
    scorers = {}
    for name in manifest["scorers"]:
        with reading(state / "scorers" / name, "scorer"):
            scorers[name] = Scorer.load(state / "scorers" / name)
    with reading(state / "thresholds.json", "thresholds"):
        thresholds = load_thresholds(state / "thresholds.json")
    settings: Mapping[str, Any] = manifest
    if (state / STATE_FILE).is_file():
        with reading(state / STATE_FILE, "detector state"):
            settings = json.loads((state / STATE_FILE).read_text(encoding="utf-8"))
            if not isinstance(settings, dict):
                raise TypeError(f"it must hold an object, not {type(settings).__name__}")
    clip_seconds = settings.get("clip_seconds")
    if clip_seconds is not None and not (isinstance(clip_seconds, int | float) and 0 < clip_seconds < 1e6):
        raise SsadError(f"{state}: damaged detector state (clip length {clip_seconds!r})")
    with reading(state / REFERENCES_FILE, "reference outputs"):
        references = References.load(state / REFERENCES_FILE)
    with reading(state / NORMAL_BANDS_FILE, "normal band statistics"):
        bands = BandProfile.load(state / NORMAL_BANDS_FILE)
    with reading(state / CONFIRMED_FILE, "confirmed anomalies"):
        confirmed = ConfirmedAnomalies.load(state / CONFIRMED_FILE)
    return version, (scorers, thresholds, manifest["default_scorer"], references, clip_seconds, bands, confirmed)
