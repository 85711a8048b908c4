"""The score table: one row per (clip, scorer), the tidy form every evaluation step reads and writes."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ssad.audio import clips as clip_table
from ssad.audio.clips import LABELS, SPLITS
from ssad.core.atomic import atomic_path
from ssad.core.errors import BadInputError

__all__ = ["ScoreTable", "COLUMNS", "machine_key", "ensemble_tables"]

#: column order of `ScoreTable.to_csv`.
COLUMNS = ("path", "machine_type", "machine_id", "split", "label", "domain", "scorer", "score")
_TEXT = COLUMNS[:-1]


def machine_key(machine_type: Any, machine_id: Any) -> np.ndarray:
    """``"<machine_type>/<machine_id>"`` per row: the id strings scorers group clips by (e.g. ``"fan/id_00"``)."""
    types, ids = np.broadcast_arrays(np.asarray(machine_type, dtype=str), np.asarray(machine_id, dtype=str))
    keys = [clip_table.machine_key(t, i) for t, i in zip(types.ravel().tolist(), ids.ravel().tolist(), strict=True)]
    return np.array(keys, dtype=str).reshape(types.shape)


@dataclass
class ScoreTable:
    """Equal-length columns, one row per (clip, scorer); string columns given as one str are repeated.

    `label` is ``normal``/``anomaly``/``unknown``; `split` is ``train``/``test``; `domain` is ``source``,
    ``target``, ... (``source`` for DCASE 2020).
    """

    path: np.ndarray
    machine_type: np.ndarray
    machine_id: np.ndarray
    split: np.ndarray
    label: np.ndarray
    domain: np.ndarray
    scorer: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        score = np.asarray(self.score, dtype=np.float64)
        if score.ndim != 1:
            raise ValueError(f"score must be 1-D, got shape {score.shape}")
        self.score = score
        n = len(score)
        for name in _TEXT:
            value = getattr(self, name)
            if isinstance(value, (str, Path)):
                arr = np.full(n, str(value))
            else:
                arr = (
                    np.asarray([str(v) for v in value], dtype=str) if len(value) else np.array([], dtype=str)
                )
            if arr.shape != (n,):
                raise ValueError(f"column {name!r} has {len(arr)} rows but score has {n}")
            setattr(self, name, arr)
        for name, allowed in (("label", LABELS), ("split", SPLITS)):
            bad = sorted(set(getattr(self, name).tolist()) - set(allowed))
            if bad:
                raise ValueError(f"{name} values {bad} are not allowed; allowed: {list(allowed)}")

    def __len__(self) -> int:
        return len(self.score)

    @property
    def ids(self) -> np.ndarray:
        """``machine_type/machine_id`` per row, the ids that scorers and thresholds group by."""
        return machine_key(self.machine_type, self.machine_id)

    @property
    def scorers(self) -> list[str]:
        """Scorer names in order of first appearance."""
        _, first = np.unique(self.scorer, return_index=True)
        return [str(self.scorer[i]) for i in sorted(first)]

    @classmethod
    def empty(cls) -> ScoreTable:
        """A table with no rows, e.g. to start a `concat`."""
        return cls(*([np.array([], dtype=str)] * len(_TEXT)), score=np.array([]))

    @classmethod
    def from_clips(cls, clips: Sequence[Any], scores: Any, scorer: str) -> ScoreTable:
        """Rows for `ssad.audio.clips.Clip` objects (anything with path, machine_type, machine_id, split, label, domain)."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(clips) != len(scores):
            raise ValueError(f"{len(clips)} clips but {len(scores)} scores")
        return cls(
            path=[str(c.path) for c in clips],
            machine_type=[c.machine_type for c in clips],
            machine_id=[c.machine_id for c in clips],
            split=[c.split for c in clips],
            label=[c.label for c in clips],
            domain=[getattr(c, "domain", "source") for c in clips],
            scorer=scorer,
            score=scores,
        )

    def take(self, index: Any) -> ScoreTable:
        """The rows selected by a boolean mask or an index array."""
        return ScoreTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def filter(self, mask: Any = None, **equals: str | Iterable[str]) -> ScoreTable:
        """Rows where `mask` holds and each named column equals the value (or is in the values), e.g. ``filter(split="test")``."""
        keep = np.ones(len(self), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if keep.shape != (len(self),):
            raise ValueError(f"mask has shape {keep.shape}, expected ({len(self)},)")
        for name, value in equals.items():
            if name not in _TEXT:
                raise ValueError(f"cannot filter on {name!r}; allowed columns: {list(_TEXT)}")
            values = [value] if isinstance(value, str) else [str(v) for v in value]
            keep &= np.isin(getattr(self, name), values)
        return self.take(keep)

    @classmethod
    def concat(cls, tables: Iterable[ScoreTable]) -> ScoreTable:
        """All rows of several tables, in order."""
        tables = list(tables)
        if not tables:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV with header `COLUMNS`; scores written losslessly."""
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            columns = [getattr(self, name).tolist() for name in _TEXT]
            for *text, score in zip(*columns, self.score.tolist(), strict=True):
                writer.writerow([*text, repr(score)])
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> ScoreTable:
        """Read a table written by `to_csv` (extra columns are ignored)."""
        path = Path(path)
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError) as err:
            raise BadInputError([(path, f"cannot read score table: {err}")]) from None
        if not rows:
            raise BadInputError([(path, "empty file; expected a header " + ",".join(COLUMNS))])
        header = rows[0]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise BadInputError([(path, f"header lacks column(s) {missing}; expected {','.join(COLUMNS)}")])
        pos = [header.index(c) for c in COLUMNS]
        problems = [
            (f"{path}:{i}", f"expected {len(header)} fields, got {len(r)}")
            for i, r in enumerate(rows[1:], 2)
            if len(r) != len(header)
        ]
        if problems:
            raise BadInputError(problems[:20], header="malformed score table")
        cols = list(zip(*rows[1:], strict=True)) if len(rows) > 1 else [()] * len(header)
        try:
            score = np.array([float(v) for v in cols[pos[-1]]])
        except ValueError as err:
            raise BadInputError([(path, f"non-numeric score: {err}")]) from None
        try:
            return cls(**{name: list(cols[p]) for name, p in zip(_TEXT, pos[:-1], strict=True)}, score=score)
        except ValueError as err:
            raise BadInputError([(path, str(err))]) from None


def ensemble_tables(
    train: ScoreTable,
    test: ScoreTable,
    members: Sequence[str],
    name: str = "ensemble",
    weights: Mapping[str, float] | None = None,
) -> tuple[ScoreTable, ScoreTable]:
    """Train and test rows of a new scorer `name`: weighted sum of the `members`' per-ID standardised scores.

    Works on tables read back from CSV, so detectors run separately can be combined; every member must
    have scored the same clips (matched by path and split).
    """
    from ssad.scoring.combine import combine_standardized

    if not members:
        raise ValueError("members is empty; name at least one scorer to combine")
    available = set(train.scorers) & set(test.scorers)
    missing = sorted(set(members) - available)
    if missing:
        raise ValueError(f"scorer(s) {missing} are not in both tables; available: {sorted(available)}")

    def aligned(table: ScoreTable) -> tuple[ScoreTable, dict[str, np.ndarray]]:
        base = table.filter(scorer=members[0])
        order = np.lexsort((base.path, base.split))
        base = base.take(order)
        scores = {}
        for m in members:
            part = table.filter(scorer=m)
            part = part.take(np.lexsort((part.path, part.split)))
            if len(part) != len(base) or np.any(part.path != base.path) or np.any(part.split != base.split):
                raise ValueError(f"scorer {m!r} did not score the same clips as {members[0]!r}")
            scores[m] = part.score
        return base, scores

    tr, tr_scores = aligned(train)
    te, te_scores = aligned(test)
    tr_ids = tr.ids
    out = []
    for base, scores in ((tr, tr_scores), (te, te_scores)):
        combined = combine_standardized(tr_scores, tr_ids, scores, base.ids, weights)
        out.append(ScoreTable(**{**{f: getattr(base, f) for f in _TEXT}, "scorer": name, "score": combined}))
    return out[0], out[1]
