"""Errors that ssad raises for bad input, so the CLI can print one clear message instead of a trace."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["SsadError", "BadInputError"]


class SsadError(Exception):
    """Base class: any error whose message is meant for the user as it stands."""


class BadInputError(SsadError):
    """One or more input files or folders are unusable; `problems` lists each (path, what is wrong)."""

    def __init__(self, problems: Sequence[tuple[str | Path, str]], header: str = "bad input") -> None:
        self.problems = [(str(p), why) for p, why in problems]
        lines = [f"{header}: {len(self.problems)} problem(s)"]
        lines += [f"  {p}: {why}" for p, why in self.problems]
        super().__init__("\n".join(lines))
