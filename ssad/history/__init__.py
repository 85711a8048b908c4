"""The monitor's history: every scored window, event and alarm, in SQLite (default) or PostgreSQL.

`History` writes (in small batches) and is read by `ssad.history.queries`; `ssad.history.retention` drops and
downsamples old windows; `ssad.history.migrate` upgrades a history written by an older ssad.
"""

from ssad.history.store import History, database_url

__all__ = ["History", "database_url"]
