"""The history store on a real SQLite file and a real PostgreSQL: writes in batches, nothing lost on close, the
latest state, trends grouped in the database, retention and downsampling, and migrations from an older schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ssad.core.errors import SsadError
from ssad.history import History, queries, schema
from ssad.history.migrate import revision_of, upgrade
from ssad.history.retention import DAY, prune
from ssad.history.store import make_engine

NOW = 1_800_000_000.0


def _window(history: History, machine: str, t: float, score: float, *, alert: bool = False) -> None:
    history.add_window(machine, t=t, score=score, threshold=2.0, smoothed=score, alert=alert, drift=False,
                       learning=False, summary="2.1-2.6 kHz +9 dB" if alert else None)


def test_windows_survive_a_restart_and_feed_list_trend_and_alarms(history_url: str) -> None:
    history = History(history_url, batch=7, flush_seconds=3600)
    for i in range(100):
        _window(history, "fan/a", NOW - 100 + i, float(i % 10), alert=i == 99)
        _window(history, "pump/b", NOW - 100 + i, 1.0)
    alarm = history.open_alarm("fan/a", NOW - 1, kind="new narrowband line", summary="2.1-2.6 kHz +9 dB",
                               detail={"where": [{"low_hz": 2100.0, "high_hz": 2600.0}]}, picture=b"\x89PNG")
    history.add_clip(alarm, NOW - 1, b"RIFF")
    history.add_event("armed", NOW - 50, "pump/b", threshold=2.0)
    history.close()  # 200 windows, batches of 7: the last 4 only committed here

    reopened = History(history_url)
    listed = {m["name"]: m for m in queries.machines(reopened, NOW, silent_after=60)}
    assert set(listed) == {"fan/a", "pump/b"}
    assert listed["fan/a"]["score"] == 9.0 and listed["fan/a"]["state"] == "alarm"
    assert listed["pump/b"]["state"] == "normal"
    assert queries.machines(reopened, NOW + 3600, silent_after=60)[0]["state"] == "silent"
    points = queries.trend(reopened, "fan/a", NOW - 100, NOW, points=10)
    assert len(points) == 10 and sum(p["n"] for p in points) == 100
    assert [p["score"] for p in points] == [9.0] * 10 and points[-1]["alert"] and not points[0]["alert"]
    (found,) = queries.alarms(reopened, "fan/a")
    assert (found["id"], found["clips"], found["has_picture"]) == (alarm, 1, True)
    assert queries.alarm_picture(reopened, alarm) == b"\x89PNG" and queries.alarm_clips(reopened, alarm) == [b"RIFF"]
    assert [e["kind"] for e in queries.events(reopened, "pump/b")] == ["armed"]
    reopened.close()


def test_retention_drops_old_rows_and_downsamples_old_windows(history_url: str) -> None:
    history = History(history_url)
    for i in range(120):  # two minutes of windows 3 days ago, one an alert
        _window(history, "fan/a", NOW - 3 * DAY + i, float(i), alert=i == 30)
    for i in range(10):  # 40 days ago
        _window(history, "fan/a", NOW - 40 * DAY + i, 1.0)
    _window(history, "fan/a", NOW - 10, 5.0)
    history.flush()
    done = prune(history, keep=30, downsample_after=1, bucket=60, now=NOW)
    assert done.dropped == 10 and done.folded == 120
    folded = queries.trend(history, "fan/a", NOW - 4 * DAY, NOW - 2 * DAY, points=1000)
    assert sum(p["n"] for p in folded) == 120 and len(folded) in (2, 3)  # minute buckets
    assert max(p["score"] for p in folded) == 119.0 and any(p["alert"] for p in folded)
    assert queries.trend(history, "fan/a", NOW - 60, NOW)[0]["n"] == 1  # recent windows stay whole
    history.close()


def test_an_older_history_is_migrated_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    engine = make_engine(path)
    upgrade(engine, "0001")  # a history as the first ssad with one wrote it: no alarms table
    with engine.begin() as connection:
        assert revision_of(connection) == "0001"
        assert not sa.inspect(connection).has_table("alarms")
        connection.execute(schema.machines.insert().values(id=1, name="fan/a", first_seen=NOW))
        connection.execute(sa.text("INSERT INTO windows (machine_id, t, score, threshold, smoothed, alert, drift, "
                                   "learning) VALUES (1, :t, 3.0, 2.0, 3.0, 1, 0, 0)"), {"t": NOW})
    engine.dispose()
    history = History(path)
    with history.engine.connect() as connection:
        assert revision_of(connection) == schema.SCHEMA_REVISION
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.windows)).scalar() == 1
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert history.open_alarm("fan/a", NOW, kind="k", summary="s", detail={}, picture=None) == 1
    with history.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    history.close()
    with pytest.raises(SsadError, match="newer than this ssad"):
        History(path)


def test_the_migrations_build_exactly_the_tables_ssad_writes(history_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    history = History(history_url)
    with history.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []
    history.close()


def test_two_writers_share_machines_and_the_latest_state_stays_the_latest(history_url: str) -> None:
    first, second = History(history_url), History(history_url)
    assert first.machine_id("fan/a") == second.machine_id("fan/a")
    _window(first, "fan/a", NOW, 5.0)
    first.flush()
    _window(second, "fan/a", NOW - 10, 1.0)  # an older window, from a monitor that got its message late
    second.flush()
    (latest,) = queries.machines(first, NOW, silent_after=60)
    assert (latest["t"], latest["score"]) == (NOW, 5.0)
    first.close()
    second.close()
