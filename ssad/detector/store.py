"""Versioned detector state: each update writes a new version folder, then atomically switches a small pointer.

A detector folder holds its base state (written by `Detector.save`) at its top level. Every later update
(enrolment, feedback, undo) is written whole into a fresh ``versions/<n>/`` folder through a temporary
folder and a rename, and only then made current by an ``os.replace`` of ``current.json``. A crash at any
point leaves the pointer at the previous version, so the detector loads as it was and nothing is lost;
the versions before stay on disk, and `undo` moves the pointer back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from ssad.core.atomic import give_umask_mode, sync_dir, write_text_atomic
from ssad.core.errors import SsadError

__all__ = ["POINTER_FILE", "VERSIONS_DIR", "VERSION_FILE", "commit", "current_version", "reset_versions", "state_dir",
           "undo", "update_lock", "version_record"]

POINTER_FILE = "current.json"
VERSIONS_DIR = "versions"
VERSION_FILE = "version.json"
_LOCK_FILE = ".update.lock"
_TMP_PREFIX = ".incoming-"


def current_version(directory: str | Path) -> int:
    """The version the detector loads: 0 for the base state, else the number `current.json` names."""
    pointer = Path(directory) / POINTER_FILE
    if not pointer.is_file():
        return 0
    try:
        version = json.loads(pointer.read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SsadError(f"{pointer}: unreadable version pointer ({error})") from None
    if not isinstance(version, int) or version < 0:
        raise SsadError(f"{pointer}: version must be a non-negative integer, got {version!r}")
    if version and not (Path(directory) / VERSIONS_DIR / _name(version)).is_dir():
        raise SsadError(f"{pointer}: names version {version}, which is not under {VERSIONS_DIR}/")
    return version


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


@contextmanager
def update_lock(directory: str | Path, timeout: float = 60.0):  # noqa: ANN201  (a context manager)
    """Serialise updates of one detector folder across processes."""
    lock = FileLock(str(Path(directory) / _LOCK_FILE), timeout=timeout)
    with lock:
        yield


def commit(directory: str | Path, write: Callable[[Path], None], record: dict[str, Any]) -> int:
    """Write a new version with `write(folder)`, then make it current; returns its number.

    Call under `update_lock`. If `write` raises (or the process dies), the pointer still names the
    previous version; a half-written temporary folder is removed here or by the next update.
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


def undo(directory: str | Path, machine: str) -> dict[str, Any]:
    """Make the version before the current one current again; the current one must be an update of `machine`."""
    directory = Path(directory)
    version = current_version(directory)
    if version == 0:
        raise SsadError(f"{directory}: nothing to undo (the detector is at its saved base state)")
    record = version_record(directory, version)
    if record.get("machine") != machine:
        raise SsadError(f"{directory}: the last update ({record.get('action')} of {record.get('machine')}) is not "
                        f"of {machine}; undo it with --machine {record.get('machine')}")
    _point(directory, int(record["parent"]))
    return record


def reset_versions(directory: str | Path) -> None:
    """Forget every version (a new base state is being saved in this folder)."""
    directory = Path(directory)
    (directory / POINTER_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory / VERSIONS_DIR, ignore_errors=True)


def _name(version: int) -> str:
    return f"{version:04d}"


def _point(directory: Path, version: int) -> None:
    """Atomically switch `current.json` to `version` (write a temporary file, fsync, os.replace, fsync the folder)."""
    write_text_atomic(directory / POINTER_FILE, json.dumps({"version": version}), durable=True)


def _sync_tree(folder: Path) -> None:
    """Flush every file under `folder` to disk before the rename that publishes it."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    sync_dir(folder)
