"""Fixtures of the history and console tests: a throwaway PostgreSQL (as tests/field starts mosquitto), and a
history URL on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ssad.core.errors import SsadError


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1 (initdb in a temporary folder, as an unprivileged user when root); its URL.

    Skipped, saying why, where it cannot start (no PostgreSQL installed: `make setup` installs it as root).
    """
    from ssad.history.postgres import LocalPostgres

    try:
        server = LocalPostgres().start()
    except (SsadError, OSError) as error:
        pytest.skip(f"no PostgreSQL for the history tests: {error}")
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh history on a real SQLite file, or in a fresh database of the throwaway PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "history.db")
        return
    import sqlalchemy as sa

    base = request.getfixturevalue("postgres_server")
    name = "h_" + tmp_path.name.lower().replace("-", "_")[-40:]
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
