"""Old history: windows older than `downsample_after` days folded into one row per machine and `bucket` seconds,
and everything older than `keep` days dropped."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

import ssad.history.schema as schema
from ssad.history.queries import bucket_of
from ssad.history.store import History

__all__ = ["Pruned", "prune"]

DAY = 86400.0


@dataclass
class Pruned:
    """What one pass did: rows dropped (past `keep`) and raw windows folded into downsampled rows."""

    dropped: int
    folded: int


def prune(history: History, *, keep: float | None, downsample_after: float | None, bucket: float = 60.0,
          now: float | None = None) -> Pruned:
    """Drop what is older than `keep` days and downsample raw windows older than `downsample_after` days."""
    now = time.time() if now is None else now
    w, dropped, folded = schema.windows, 0, 0
    with history.engine.begin() as connection:
        if keep is not None:
            cutoff = now - keep * DAY
            for table, column in ((w, w.c.t), (schema.events, schema.events.c.t)):
                dropped += connection.execute(table.delete().where(column < cutoff)).rowcount
            old = sa.select(schema.alarms.c.id).where(schema.alarms.c.started < cutoff)
            connection.execute(schema.alarm_clips.delete().where(schema.alarm_clips.c.alarm_id.in_(old)))
            dropped += connection.execute(schema.alarms.delete().where(schema.alarms.c.started < cutoff)).rowcount
        if downsample_after is not None:
            until = (now - downsample_after * DAY) // bucket * bucket  # whole buckets only
            raw = sa.and_(w.c.span == 0, w.c.t < until)
            first = connection.execute(sa.select(sa.func.min(w.c.t)).where(raw)).scalar()
            if first is not None:
                origin = first // bucket * bucket
                number = bucket_of(w.c.t, origin, bucket, history.dialect)
                start = (number * bucket + origin).label("t")
                folded_rows = (sa.select(w.c.machine_id, start, sa.func.max(w.c.score), sa.func.max(w.c.threshold),
                                         sa.func.max(w.c.smoothed), _any(w.c.alert), _any(w.c.drift),
                                         _any(w.c.learning), sa.func.sum(w.c.n), sa.literal(bucket))
                               .where(raw).group_by(w.c.machine_id, number))
                columns = ["machine_id", "t", "score", "threshold", "smoothed", "alert", "drift", "learning", "n",
                           "span"]
                connection.execute(w.insert().from_select(columns, folded_rows))
                folded = connection.execute(w.delete().where(raw)).rowcount
    return Pruned(dropped, folded)


def _any(column: sa.Column) -> sa.ColumnElement:
    """True where any of the group's values is (as the column's boolean type)."""
    return sa.cast(sa.func.max(sa.cast(column, sa.Integer)), sa.Boolean)
