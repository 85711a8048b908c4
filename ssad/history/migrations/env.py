"""Alembic's environment: migrate the connection `ssad.history.migrate` hands over in the config's attributes."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
