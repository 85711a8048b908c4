"""Reading the history for the console: machines and their state, a trend downsampled in the database, alarms,
their pictures and clips, events."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

import ssad.history.schema as schema
from ssad.history.store import History

__all__ = ["STATES", "alarm", "alarm_clips", "alarm_picture", "alarms", "bucket_of", "events", "machine_names",
           "machines", "trend"]

#: a machine's state on the console, in the order an operator looks at them
STATES = ("alarm", "drift", "learning", "silent", "normal")


def bucket_of(t: Any, origin: float, width: float, dialect: str) -> Any:
    """The SQL expression of the bucket number of time `t` (buckets of `width` seconds from `origin`)."""
    position = (t - origin) / width
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(position), sa.Integer)
    return sa.cast(position, sa.Integer)  # SQLite truncates, and t >= origin here


def _state(row: Any, now: float, silent_after: float) -> str:
    if now - row["t"] > silent_after:
        return "silent"
    if row["learning"]:
        return "learning"
    return "alarm" if row["alert"] else "drift" if row["drift"] else "normal"


def machines(history: History, now: float, *, silent_after: float = 60.0) -> list[dict[str, Any]]:
    """Every machine with its latest window and state (silent: no window for `silent_after` seconds)."""
    m, latest = schema.machines, schema.latest
    query = sa.select(m.c.name, latest).join(latest, latest.c.machine_id == m.c.id).order_by(m.c.name)
    with history.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [{**{k: row[k] for k in ("name", "t", "score", "threshold", "smoothed", "summary")},
             **{k: bool(row[k]) for k in ("alert", "drift", "learning")}, "state": _state(row, now, silent_after)}
            for row in rows]


def machine_names(history: History) -> list[str]:
    """The names of the machines the history holds."""
    with history.engine.connect() as connection:
        return list(connection.execute(sa.select(schema.machines.c.name).order_by(schema.machines.c.name)).scalars())


def _machine_id(connection: sa.Connection, name: str) -> int | None:
    return connection.execute(sa.select(schema.machines.c.id).where(schema.machines.c.name == name)).scalar()


def trend(history: History, machine: str, since: float, until: float, *, points: int = 400) -> list[dict[str, Any]]:
    """The machine's windows from `since` to `until` in at most `points` buckets (grouped in the database): each
    bucket's start, highest score, threshold and smoothed score, whether it alerted, and its window count."""
    w = schema.windows
    width = max((until - since) / points, 1e-3)
    bucket = bucket_of(w.c.t, since, width, history.dialect).label("bucket")
    with history.engine.connect() as connection:
        machine_id = _machine_id(connection, machine)
        if machine_id is None:
            return []
        query = (sa.select(bucket, sa.func.min(w.c.t), sa.func.max(w.c.score), sa.func.max(w.c.threshold),
                           sa.func.max(w.c.smoothed), sa.func.max(sa.cast(w.c.alert, sa.Integer)),
                           sa.func.sum(w.c.n))
                 .where(w.c.machine_id == machine_id, w.c.t >= since, w.c.t < until)
                 .group_by(bucket).order_by(bucket))
        rows = connection.execute(query).all()
    return [{"t": t, "score": score, "threshold": threshold, "smoothed": smoothed, "alert": bool(alert), "n": n}
            for _, t, score, threshold, smoothed, alert, n in rows]


def _alarm_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "machine": row.name, "started": row.started, "ended": row.ended, "kind": row.kind,
            "summary": row.summary, "detail": json.loads(row.detail or "{}"), "label": row.label,
            "labelled": row.labelled, "version": row.version, "has_picture": bool(row.has_picture),
            "clips": row.clips}


def _alarm_query() -> sa.Select:
    a, m, c = schema.alarms, schema.machines, schema.alarm_clips
    clips = sa.select(sa.func.count()).where(c.c.alarm_id == a.c.id).scalar_subquery().label("clips")
    return (sa.select(a.c.id, m.c.name, a.c.started, a.c.ended, a.c.kind, a.c.summary, a.c.detail, a.c.label,
                      a.c.labelled, a.c.version, a.c.picture.is_not(None).label("has_picture"), clips)
            .join(m, m.c.id == a.c.machine_id))


def alarms(history: History, machine: str | None = None, *, limit: int = 20, after: int = 0) -> list[dict[str, Any]]:
    """The latest alarms (of one machine, or all), newest first; only those with an id above `after` if given."""
    a = schema.alarms
    query = _alarm_query().where(a.c.id > after).order_by(a.c.id.desc()).limit(limit)
    if machine is not None:
        query = query.where(schema.machines.c.name == machine)
    with history.engine.connect() as connection:
        return [_alarm_dict(row) for row in connection.execute(query)]


def alarm(history: History, alarm_id: int) -> dict[str, Any] | None:
    """One alarm, or None."""
    with history.engine.connect() as connection:
        row = connection.execute(_alarm_query().where(schema.alarms.c.id == alarm_id)).first()
    return None if row is None else _alarm_dict(row)


def alarm_picture(history: History, alarm_id: int) -> bytes | None:
    """The alarm's picture (PNG), or None."""
    with history.engine.connect() as connection:
        return connection.execute(sa.select(schema.alarms.c.picture).where(schema.alarms.c.id == alarm_id)).scalar()


def alarm_clips(history: History, alarm_id: int) -> list[bytes]:
    """The audio kept of the alarm's windows (WAV bytes each), oldest first."""
    c = schema.alarm_clips
    with history.engine.connect() as connection:
        return list(connection.execute(sa.select(c.c.wav).where(c.c.alarm_id == alarm_id).order_by(c.c.id)).scalars())


def events(history: History, machine: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
    """The latest events (of one machine and the monitor's own, or all), newest first."""
    e, m = schema.events, schema.machines
    query = (sa.select(e.c.id, e.c.t, e.c.kind, e.c.data, m.c.name).outerjoin(m, m.c.id == e.c.machine_id)
             .order_by(e.c.id.desc()).limit(limit))
    if machine is not None:
        query = query.where(sa.or_(m.c.name == machine, e.c.machine_id.is_(None)))
    with history.engine.connect() as connection:
        return [{"id": row["id"], "t": row["t"], "kind": row["kind"], "machine": row["name"],
                 "data": json.loads(row["data"])} for row in connection.execute(query).mappings()]
