"""Writing the history: a SQLAlchemy engine on SQLite (WAL) or PostgreSQL, windows buffered and committed in
small batches, events and alarms at once.

Nothing is lost when a monitor stops: a batch is committed every `batch` windows or `flush_seconds` seconds, and
`close` (which `ssad monitor` calls on its way out, Ctrl-C and SIGTERM included) commits the rest. A monitor that
restarts on the same history carries on: machines keep their ids, alarms left open are closed (`close_open_alarms`).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import ssad.history.schema as schema
from ssad.core.errors import SsadError
from ssad.history.migrate import upgrade

__all__ = ["History", "database_url"]

WINDOW_FIELDS = ("t", "score", "threshold", "smoothed", "alert", "drift", "learning", "summary")


def database_url(where: str) -> str:
    """An SQLAlchemy URL for `--history`: a file path (SQLite), sqlite:///..., or postgresql://... (psycopg)."""
    if where.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + where.split("://", 1)[1]
    if "://" in where:
        return where
    return "sqlite:///" + str(Path(where).expanduser().resolve())


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """WAL (readers beside one writer), a wait instead of 'database is locked', and fewer fsyncs (WAL keeps it safe)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(where: str) -> sa.Engine:
    """An engine on the history `where` names; SQLite files get WAL mode."""
    url = database_url(where)
    try:
        engine = sa.create_engine(url, pool_pre_ping=url.startswith("postgresql"))
    except ModuleNotFoundError as error:
        raise SsadError(f"the history needs the console extra ({error.name} is missing): "
                        "pip install 'ssad[console]' (make setup installs it)") from None
    if engine.dialect.name == "sqlite":
        Path(engine.url.database or ".").parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class History:
    """One history database, opened (and upgraded to this ssad's schema) for writing and reading.

    Args:
        where: a file path (SQLite), or a database URL such as postgresql://user@host/db.
        batch: windows buffered before a commit.
        flush_seconds: a buffered window is committed at latest this long after it came (at the next window).
    """

    def __init__(self, where: str, *, batch: int = 500, flush_seconds: float = 1.0) -> None:
        self.where = where
        self.engine = make_engine(where)
        try:
            upgrade(self.engine)
        except sa.exc.OperationalError as error:
            raise SsadError(f"cannot open the history {where}: {error.orig}") from None
        self.batch = batch
        self.flush_seconds = flush_seconds
        self._ids: dict[str, int] = {}
        self._rows: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def machine_id(self, name: str, connection: sa.Connection | None = None) -> int:
        """The machine's id, added the first time it is seen."""
        if name in self._ids:
            return self._ids[name]
        machines = schema.machines
        with (self.engine.begin() if connection is None else nullcontext(connection)) as c:
            # another monitor may add the same machine at the same moment: its row then stands
            c.execute(_upsert_insert(self.dialect)(machines).values(name=name, first_seen=time.time())
                      .on_conflict_do_nothing(index_elements=["name"]))
            found = c.execute(sa.select(machines.c.id).where(machines.c.name == name)).scalar_one()
        self._ids[name] = found
        return found

    def add_window(self, machine: str, **values: Any) -> None:
        """Buffer one scored window (`WINDOW_FIELDS`); commit the buffer when it is full or old enough."""
        self._rows.append({"machine_id": self.machine_id(machine), **{k: values.get(k) for k in WINDOW_FIELDS}})
        if len(self._rows) >= self.batch or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def add_windows(self, rows: list[dict[str, Any]]) -> None:
        """Write many windows (each with `machine_id` and `WINDOW_FIELDS`) in one transaction, e.g. a benchmark's."""
        with self.engine.begin() as connection:
            self._write(connection, rows)

    def flush(self) -> int:
        """Commit the buffered windows and each machine's latest state; return how many windows.

        The buffer is emptied only once the commit is done: a flush interrupted (Ctrl-C, SIGTERM) keeps its windows
        for the next one, `close`'s.
        """
        count = len(self._rows)
        self._last_flush = time.monotonic()
        if count:
            with self.engine.begin() as connection:
                self._write(connection, self._rows[:count])
            del self._rows[:count]
        return count

    def _write(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        connection.execute(schema.windows.insert(), rows)
        last = list({row["machine_id"]: row for row in rows}.values())
        statement = _upsert_insert(self.dialect)(schema.latest)
        connection.execute(statement.on_conflict_do_update(  # a later window only: monitors sharing a machine
            index_elements=["machine_id"], set_={k: statement.excluded[k] for k in WINDOW_FIELDS},
            where=schema.latest.c.t <= statement.excluded.t), last)

    def add_event(self, kind: str, t: float, machine: str | None = None, **data: Any) -> int:
        """Record one event (alarm, armed, feedback, broker_down, ...) at once; return its id."""
        with self.engine.begin() as connection:
            machine_id = None if machine is None else self.machine_id(machine, connection)
            return connection.execute(schema.events.insert().values(
                t=t, machine_id=machine_id, kind=kind, data=json.dumps(data, default=str))
                .returning(schema.events.c.id)).scalar_one()

    def open_alarm(self, machine: str, t: float, *, kind: str, summary: str, detail: dict[str, Any],
                   picture: bytes | None) -> int:
        """Record an alarm raised at `t` (with its explanation and picture); return its id."""
        with self.engine.begin() as connection:
            return connection.execute(schema.alarms.insert().values(
                machine_id=self.machine_id(machine, connection), started=t, kind=kind, summary=summary,
                detail=json.dumps(detail, default=str), picture=picture).returning(schema.alarms.c.id)).scalar_one()

    def add_clip(self, alarm_id: int, t: float, wav: bytes) -> None:
        """Keep one window's audio of an alarm (a WAV), for feedback from the console."""
        with self.engine.begin() as connection:
            connection.execute(schema.alarm_clips.insert().values(alarm_id=alarm_id, t=t, wav=wav))

    def close_alarm(self, alarm_id: int, t: float) -> None:
        """The alarm is over at `t`."""
        with self.engine.begin() as connection:
            connection.execute(schema.alarms.update().where(schema.alarms.c.id == alarm_id).values(ended=t))

    def close_open_alarms(self, machine: str, t: float) -> int:
        """Close the machine's alarms a stopped monitor left open (at `t`, its first window now); return how many."""
        alarms = schema.alarms
        with self.engine.begin() as connection:
            result = connection.execute(alarms.update().where(
                alarms.c.machine_id == self.machine_id(machine, connection), alarms.c.ended.is_(None)).values(ended=t))
            return result.rowcount

    def label_alarm(self, alarm_id: int, label: str, version: int | None) -> None:
        """The operator's word on an alarm ('normal' or 'fault') and the detector version it made."""
        with self.engine.begin() as connection:
            connection.execute(schema.alarms.update().where(schema.alarms.c.id == alarm_id)
                               .values(label=label, labelled=time.time(), version=version))

    def unlabel_alarm(self, alarm_id: int) -> None:
        """Forget the operator's word on an alarm (its update was undone)."""
        with self.engine.begin() as connection:
            connection.execute(schema.alarms.update().where(schema.alarms.c.id == alarm_id)
                               .values(label=None, labelled=None, version=None))

    def close(self) -> None:
        """Commit what is buffered and release the database."""
        self.flush()
        self.engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _upsert_insert(dialect: str) -> Any:
    """The dialect's INSERT with ON CONFLICT DO UPDATE."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise SsadError(f"the history runs on SQLite or PostgreSQL, not {dialect}")
    return insert
