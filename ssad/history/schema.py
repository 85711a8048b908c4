"""The history's tables (SQLAlchemy Core): machines, scored windows, each machine's latest state, events, alarms.

Times are seconds since the epoch (UTC). A window row with `span` 0 is one scored window; a downsampled row
stands for `n` windows of `span` seconds from `t` (its score, threshold and smoothed score their highest, its alert
and drift set if any window's was). The migrations under `migrations/versions` build exactly these tables;
`SCHEMA_REVISION` is the newest one, which `ssad.history.store.History` upgrades an older history to on opening.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["SCHEMA_REVISION", "alarm_clips", "alarms", "events", "latest", "machines", "metadata", "windows"]

#: the newest migration (`migrations/versions/*.py`): what this ssad writes and reads
SCHEMA_REVISION = "0002"

metadata = sa.MetaData()


def _window_columns() -> list[sa.Column]:
    """What a scored window holds, in the windows and the latest-state tables alike."""
    return [sa.Column("t", sa.Float(precision=53), nullable=False), sa.Column("score", sa.Float, nullable=False),
            sa.Column("threshold", sa.Float, nullable=False), sa.Column("smoothed", sa.Float, nullable=False),
            sa.Column("alert", sa.Boolean, nullable=False), sa.Column("drift", sa.Boolean, nullable=False),
            sa.Column("learning", sa.Boolean, nullable=False), sa.Column("summary", sa.Text)]


machines = sa.Table(
    "machines", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("first_seen", sa.Float(precision=53), nullable=False),
)

windows = sa.Table(
    "windows", metadata,
    sa.Column("machine_id", sa.Integer, nullable=False),
    *_window_columns(),
    sa.Column("n", sa.Integer, nullable=False, server_default="1"),
    sa.Column("span", sa.Float, nullable=False, server_default="0"),
    sa.Index("ix_windows_machine_t", "machine_id", "t"),
)

latest = sa.Table(
    "latest", metadata,
    sa.Column("machine_id", sa.Integer, primary_key=True, autoincrement=False),
    *_window_columns(),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("t", sa.Float(precision=53), nullable=False),
    sa.Column("machine_id", sa.Integer),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Index("ix_events_t", "t"),
    sa.Index("ix_events_machine_t", "machine_id", "t"),
)

alarms = sa.Table(
    "alarms", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("machine_id", sa.Integer, nullable=False),
    sa.Column("started", sa.Float(precision=53), nullable=False),
    sa.Column("ended", sa.Float(precision=53)),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Column("picture", sa.LargeBinary),
    sa.Column("label", sa.Text),
    sa.Column("labelled", sa.Float(precision=53)),
    sa.Column("version", sa.Integer),
    sa.Index("ix_alarms_machine_started", "machine_id", "started"),
)

alarm_clips = sa.Table(
    "alarm_clips", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.Integer, nullable=False, index=True),
    sa.Column("t", sa.Float(precision=53), nullable=False),
    sa.Column("wav", sa.LargeBinary, nullable=False),
)
