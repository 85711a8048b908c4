"""The one loop that checks many files: each through a probe, every problem collected (none raised half-way), then
raised at once or, when the caller skips bad files, logged and left out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tqdm import tqdm

from ssad.core.errors import BadInputError

__all__ = ["Screened", "log_skipped", "screen"]

log = logging.getLogger("ssad")
Item = TypeVar("Item")


@dataclass
class Screened(Generic[Item]):
    """What passed (`kept`, with what the probe gave for each, `results`, and their positions) and every problem."""

    kept: list[Item] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def screen(items: Sequence[Item], probe: Callable[[Item], tuple[Any, str | None]], *,
           label: Callable[[Item, int], str] = lambda item, _: str(getattr(item, "path", item)),
           progress: str | None = None) -> Screened[Item]:
    """Run `probe` on each item: it returns (result, None) for a usable item, (result, why) for an unusable one, or
    raises BadInputError (its problems are kept); `label` names an item in a problem; `progress` titles a bar."""
    out: Screened[Item] = Screened()
    for k, item in enumerate(tqdm(items, desc=progress, unit="clip", disable=progress is None)):
        try:
            result, why = probe(item)
        except BadInputError as error:
            out.problems += error.problems
            continue
        if why:
            out.problems.append((label(item, k), why))
            continue
        out.kept.append(item)
        out.results.append(result)
        out.positions.append(k)
    return out


def log_skipped(problems: Sequence[tuple[str, str]], what: str) -> None:
    """Warn once about the items left out, each with its problem (`what`: "unusable clip(s)", ...)."""
    if problems:
        log.warning("skipped %d %s:\n%s", len(problems), what, "\n".join(f"  {p}: {why}" for p, why in problems))
