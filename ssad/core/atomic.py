"""Atomic writes: a reader, or an interrupted writer, sees the old file or the new one, never half of one.

Every file ssad keeps goes through `atomic_path`: the writer fills a temporary file in the target's folder,
which then replaces the target with one `os.replace`. Temporary files are made private by `tempfile`;
`give_umask_mode` gives what they publish the mode any file or folder gets under the user's umask, so
that, say, a monitor running as another user can read them. `durable=True` also flushes the file and its
folder to disk, for what must survive a power cut (a detector's version pointer).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "give_umask_mode", "sync_dir", "umask", "write_bytes_atomic", "write_text_atomic"]


def umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_mode(path: str | Path) -> None:
    """Set the mode a new file (0o666) or folder (0o777) gets under the umask, instead of tempfile's private 0o600/0o700."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~umask())


def sync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` for the body to write; on success it replaces `path`, on failure it is removed.

    The temporary name ends with `path`'s suffix, so writers that choose a format by suffix (matplotlib)
    or add one when it is missing (numpy's `savez`) write what `path` asks for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        give_umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, *, durable: bool = False) -> None:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)
