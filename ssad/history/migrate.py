"""The history's schema version: read it, and upgrade an older history (alembic) to the one this ssad writes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from ssad.core.errors import SsadError
from ssad.history.schema import SCHEMA_REVISION

__all__ = ["revision_of", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: sa.Connection):  # noqa: ANN202  (alembic's Config, imported late)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def revision_of(connection: sa.Connection) -> str | None:
    """The schema revision a history is at (None: no history yet)."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str | None:
    """Bring the history behind `engine` to `revision` (default: this ssad's); return the revision it was at.

    A history written by a newer ssad (a revision this one does not know) is refused, not changed.
    """
    from alembic import command
    from alembic.script import ScriptDirectory

    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # monitors starting together migrate one after the other
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(4343)"))
        was = revision_of(connection)
        config = _config(connection)
        known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
        if was is not None and was not in known:
            raise SsadError(f"this history is at schema revision {was}, newer than this ssad's ({SCHEMA_REVISION}): "
                            "open it with the ssad that wrote it, or a newer one")
        if was != (SCHEMA_REVISION if revision == "head" else revision):
            command.upgrade(config, revision)
    return was
