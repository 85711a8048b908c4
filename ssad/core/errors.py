"""Errors that ssad raises for bad input, so the CLI can print one clear message instead of a trace."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SsadError", "BadInputError", "DAMAGE", "reading"]

#: what the readers of JSON, npz and safetensors files raise on a damaged file (zip, unicode and JSON errors among them)
DAMAGE = (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError, EOFError, OSError,
          RuntimeError, zipfile.BadZipFile)


class SsadError(Exception):
    """Base class: any error whose message is meant for the user as it stands."""


class BadInputError(SsadError):
    """One or more input files or folders are unusable; `problems` lists each (path, what is wrong)."""

    def __init__(self, problems: Sequence[tuple[str | Path, str]], header: str = "bad input") -> None:
        self.problems = [(str(p), why) for p, why in problems]
        lines = [f"{header}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}: {why}" for p, why in self.problems]
        super().__init__("\n".join(lines))


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Turn a damaged file's error (`DAMAGE`) while reading `path` into one SsadError naming it and `what` it is."""
    try:
        yield
    except SsadError:
        raise
    except DAMAGE as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise SsadError(f"{path}: damaged {what} ({reason}); restore the folder from a copy or save it again") \
            from None
