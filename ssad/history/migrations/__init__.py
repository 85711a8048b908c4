"""Alembic migrations of the history's schema (run by `ssad.history.migrate`, not by the alembic command)."""
