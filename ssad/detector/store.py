"""Versioned detector state: each update writes a new version folder, then atomically switches a small pointer.

A detector folder holds its base state (written by `Detector.save`) at its top level. Every later update
(enrolment, feedback) is written whole into a fresh ``versions/<n>/`` folder through a temporary
folder and a rename, and only then made current by an ``os.replace`` of ``current.json``. A crash at any
point leaves the pointer at the previous version, so the detector loads as it was and nothing is lost;
the versions before stay on disk, `undo` moves the pointer back and `redo` forward again (the pointer keeps the
versions undone until the next update).

A new base state never overwrites another detector unasked: `write_detector` refuses a folder that holds one,
or, told to replace it, first moves the old detector whole into ``replaced/<time>/`` (or removes it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ssad.core.atomic import give_umask_mode, sync_dir, write_text_atomic
from ssad.core.errors import SsadError

__all__ = ["MANIFEST_FILE", "POINTER_FILE", "REPLACED_DIR", "VERSIONS_DIR", "VERSION_FILE", "Rollback", "commit",
           "current_version", "describe_detector", "describe_update", "has_updates", "holds_detector", "redo",
           "redo_versions", "refuse_replacing", "reset_versions", "state_dir", "undo", "update_lock", "version_record",
           "write_detector"]

#: a saved detector's manifest: its format, scorers and default scorer; a folder without one is no detector
MANIFEST_FILE = "detector.json"
POINTER_FILE = "current.json"
VERSIONS_DIR = "versions"
VERSION_FILE = "version.json"
#: where a replaced detector is kept, whole, under the time it was replaced
REPLACED_DIR = "replaced"
_LOCK_FILE = ".update.lock"
_TMP_PREFIX = ".incoming-"
_SAVE_PREFIX = ".incoming-save-"


def current_version(directory: str | Path) -> int:
    """The version the detector loads: 0 for the base state, else the number `current.json` names."""
    version = _pointer(Path(directory))["version"]
    if not isinstance(version, int) or version < 0:
        raise SsadError(f"{Path(directory) / POINTER_FILE}: version must be a non-negative integer, got {version!r}")
    if version and not (Path(directory) / VERSIONS_DIR / _name(version)).is_dir():
        raise SsadError(f"{Path(directory) / POINTER_FILE}: names version {version}, which is not under {VERSIONS_DIR}/")
    return version


def redo_versions(directory: str | Path) -> list[int]:
    """The versions undone since the last update, the next one to redo last."""
    return [int(v) for v in _pointer(Path(directory)).get("redo", [])]


def state_dir(directory: str | Path, version: int | None = None) -> Path:
    """Where a version's scorers, thresholds and references live (the base state is the folder itself)."""
    directory = Path(directory)
    version = current_version(directory) if version is None else version
    return directory if version == 0 else directory / VERSIONS_DIR / _name(version)


def version_record(directory: str | Path, version: int) -> dict[str, Any]:
    """What update made a version: action, machine, clips, parent version, time."""
    if version == 0:
        return {"version": 0, "action": "save", "parent": None}
    return json.loads((state_dir(directory, version) / VERSION_FILE).read_text())


def has_updates(directory: str | Path) -> bool:
    """Whether the detector saved in `directory` was ever updated (enrolment, feedback): it has versions."""
    versions = Path(directory) / VERSIONS_DIR
    return versions.is_dir() and any(p.name.isdigit() for p in versions.iterdir())


def holds_detector(directory: str | Path) -> bool:
    """Whether `directory` holds a saved detector (its manifest)."""
    return (Path(directory) / MANIFEST_FILE).is_file()


def _names(paths: Sequence[str], most: int = 3) -> str:
    names = [Path(p).name for p in paths[:most]]
    return ", ".join(names) + (f" and {len(paths) - most} more" if len(paths) > most else "")


def describe_update(record: dict[str, Any]) -> str:
    """An update in words: what it did, to which machine, with which clips (`version_record`'s record)."""
    action, machine = record.get("action"), record.get("machine")
    normal, faults = list(record.get("files", [])), list(record.get("anomalies", []))
    if action == "enroll":
        return f"the enrolment of {machine} ({len(normal)} normal clip(s): {_names(normal)})"
    if action == "save":
        return "the saved base state"
    parts = [f"{len(normal)} false alarm(s) learnt as normal: {_names(normal)}"] if normal else []
    parts += [f"{len(faults)} confirmed fault(s): {_names(faults)}"] if faults else []
    return f"the {action} on {machine} ({'; '.join(parts) or 'no clip'})"


def describe_detector(directory: str | Path) -> str:
    """What the detector in `directory` holds: its machines and its version (for messages about replacing it)."""
    from ssad.scoring.thresholds import load_thresholds

    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        version = current_version(directory)
        thresholds = load_thresholds(state_dir(directory, version) / "thresholds.json")
        machines = sorted(thresholds[manifest["default_scorer"]].threshold_)
    except (OSError, ValueError, KeyError, TypeError, SsadError) as error:
        return f"unreadable: {error}"
    known = f"machines {', '.join(machines)}" if machines else "no machine yet"
    if len(machines) > 6:
        known = f"{len(machines)} machines ({', '.join(machines[:5])}, ...)"
    at = "its saved base state" if version == 0 else \
        f"version {version}, after {describe_update(version_record(directory, version))}"
    return f"{known}; at {at}"


def refuse_replacing(directory: str | Path) -> None:
    """SsadError naming the detector in `directory`, its machines and version, and how to replace it; else nothing."""
    directory = Path(directory)
    if holds_detector(directory):
        raise SsadError(f"{directory} already holds a detector ({describe_detector(directory)}); nothing was "
                        f"written. Pass replace=True to replace it: the detector there is then kept whole in "
                        f"{directory / REPLACED_DIR}/<time>/, from where it can be used (--detector) or moved back")


@contextmanager
def update_lock(directory: str | Path, timeout: float = 60.0):  # noqa: ANN201  (a context manager)
    """Serialise updates of one detector folder across processes."""
    lock = FileLock(str(Path(directory) / _LOCK_FILE), timeout=timeout)
    with lock:
        yield


def write_detector(directory: str | Path, write: Callable[[Path], None], *, extras: Sequence[str] = (),
                   replace: bool = False, keep_replaced: bool = True) -> Path | None:
    """Write a new detector into `directory` with `write(folder)`; returns where a replaced one was kept, if one was.

    A folder that holds a detector is refused (`refuse_replacing`) unless `replace`; then the old detector's
    entries (those the new one writes, `extras`, its versions and pointer) are moved into
    ``replaced/<time>/`` (with `keep_replaced`) or removed, and only then the new ones moved in, the manifest last.
    The new detector is written whole into a temporary folder first, so an interrupted save leaves the old
    detector (or, once moved, no manifest and the old one in ``replaced/``), never a mix of the two.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SsadError(f"{directory} is a file: a detector is saved into a folder")
    directory.mkdir(parents=True, exist_ok=True)
    with update_lock(directory):
        if not replace:
            refuse_replacing(directory)
        for stale in directory.glob(f"{_SAVE_PREFIX}*"):  # left by a process killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
        incoming = Path(tempfile.mkdtemp(prefix=_SAVE_PREFIX, dir=directory))
        try:
            give_umask_mode(incoming)
            write(incoming)
            _sync_tree(incoming)
            new = [p.name for p in incoming.iterdir()]
            ours = [MANIFEST_FILE, *sorted({*new, *extras, POINTER_FILE, VERSIONS_DIR} - {MANIFEST_FILE})]
            kept = _set_aside(directory, ours, keep_replaced) if holds_detector(directory) else None
            for name in ours:  # what an interrupted save left behind
                _remove(directory / name)
            for name in sorted(new, key=lambda n: n == MANIFEST_FILE):
                os.replace(incoming / name, directory / name)
            sync_dir(directory)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
    return kept


def _set_aside(directory: Path, names: Sequence[str], keep: bool) -> Path | None:
    """Move (or remove) the detector's entries `names`, manifest first so that it stops being a detector at once."""
    target = None
    if keep:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = directory / REPLACED_DIR / stamp
        n = 1
        while target.exists():
            n += 1
            target = directory / REPLACED_DIR / f"{stamp}-{n}"
        target.mkdir(parents=True)
        give_umask_mode(target)
    for name in names:
        path = directory / name
        if not (path.exists() or path.is_symlink()):
            continue
        if target is not None:
            os.replace(path, target / name)
        else:
            _remove(path)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit(directory: str | Path, write: Callable[[Path], None], record: dict[str, Any]) -> int:
    """Write a new version with `write(folder)`, then make it current; returns its number.

    Call under `update_lock`. If `write` raises (or the process dies), the pointer still names the
    previous version; a half-written temporary folder is removed here or by the next update. Versions
    undone before are no longer redoable.
    """
    directory = Path(directory)
    versions = directory / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    for stale in versions.glob(f"{_TMP_PREFIX}*"):  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    parent = current_version(directory)
    number = max([int(p.name) for p in versions.iterdir() if p.name.isdigit()] + [0]) + 1
    incoming = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=versions))
    try:
        give_umask_mode(incoming)
        write(incoming)
        full = {**record, "version": number, "parent": parent, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (incoming / VERSION_FILE).write_text(json.dumps(full, indent=2) + "\n")
        _sync_tree(incoming)
        os.rename(incoming, versions / _name(number))
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    _point(directory, number)
    return number


@dataclass
class Rollback:
    """What `undo` or `redo` did: the update (a version's record) undone or redone, and the versions before and after."""

    action: str
    record: dict[str, Any]
    before: int
    after: int

    def format(self) -> str:
        """One line for the command line."""
        what = describe_update(self.record)
        if self.action == "undo":
            return (f"undid {what}: version {self.before} -> {self.after} (`ssad feedback --machine "
                    f"{self.record.get('machine')} --redo` re-applies it until the next update)")
        return f"redid {what}: version {self.before} -> {self.after}"


def undo(directory: str | Path, machine: str, *, undo_enrolment: bool = False) -> Rollback:
    """Make the version before the current one current again; the current one must be an update of `machine`.

    A machine's enrolment is undone (which removes the machine) only with `undo_enrolment`. Call under
    `update_lock`.
    """
    directory = Path(directory)
    version = current_version(directory)
    if version == 0:
        raise SsadError(f"{directory}: nothing to undo (the detector is at its saved base state)")
    record = version_record(directory, version)
    if record.get("machine") != machine:
        raise SsadError(f"{directory}: the last update ({describe_update(record)}) is not of {machine}; undo it with "
                        f"--machine {record.get('machine')}")
    if record.get("action") == "enroll" and not undo_enrolment:
        raise SsadError(f"{directory}: the last update of {machine} is {describe_update(record)}, version {version}; "
                        f"undoing it removes {machine} from the detector. Pass undo_enrolment=True to do so")
    parent = int(record["parent"])
    _point(directory, parent, [*redo_versions(directory), version])
    return Rollback("undo", record, version, parent)


def redo(directory: str | Path, machine: str) -> Rollback:
    """Make the version undone last current again, if no update came since; it must be an update of `machine`.

    Call under `update_lock`.
    """
    directory = Path(directory)
    stack = redo_versions(directory)
    version = current_version(directory)
    if not stack:
        raise SsadError(f"{directory}: nothing to redo (no update was undone since the last enrolment or feedback)")
    record = version_record(directory, stack[-1])
    if int(record.get("parent", -1)) != version:
        raise SsadError(f"{directory}: nothing to redo (version {stack[-1]} does not follow the current version {version})")
    if record.get("machine") != machine:
        raise SsadError(f"{directory}: the update to redo ({describe_update(record)}) is not of {machine}; redo it "
                        f"with --machine {record.get('machine')}")
    _point(directory, stack[-1], stack[:-1])
    return Rollback("redo", record, version, stack[-1])


def reset_versions(directory: str | Path) -> None:
    """Forget every version (a new base state is being saved in this folder)."""
    directory = Path(directory)
    (directory / POINTER_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory / VERSIONS_DIR, ignore_errors=True)


def _name(version: int) -> str:
    return f"{version:04d}"


def _pointer(directory: Path) -> dict[str, Any]:
    """`current.json` (version 0 when there is none): the current version and the versions undone since an update."""
    pointer = directory / POINTER_FILE
    if not pointer.is_file():
        return {"version": 0}
    try:
        content = json.loads(pointer.read_text())
        content["version"]  # noqa: B018  (a pointer without a version is unreadable)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SsadError(f"{pointer}: unreadable version pointer ({error})") from None
    return content


def _point(directory: Path, version: int, redo_stack: Sequence[int] = ()) -> None:
    """Atomically switch `current.json` to `version` (write a temporary file, fsync, os.replace, fsync the folder)."""
    content = {"version": version, **({"redo": list(redo_stack)} if redo_stack else {})}
    write_text_atomic(directory / POINTER_FILE, json.dumps(content), durable=True)


def _sync_tree(folder: Path) -> None:
    """Flush every file under `folder` to disk before the rename that publishes it."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    sync_dir(folder)
