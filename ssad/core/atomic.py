"""Atomic writes: a reader, or an interrupted writer, sees the old file or the new one, never half of one.

Temporary files and folders are made private by `tempfile`; `give_umask_mode` gives what they publish the mode
any file or folder gets under the user's umask, so that, say, a monitor running as another user can read them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["give_umask_mode", "umask", "write_bytes_atomic", "write_text_atomic"]


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


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and `os.replace`."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        give_umask_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
