"""The first history: machines, scored windows, each machine's latest state, events."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIME = sa.Float(precision=53)


def _window_columns() -> list[sa.Column]:
    return [sa.Column("t", _TIME, nullable=False), sa.Column("score", sa.Float, nullable=False),
            sa.Column("threshold", sa.Float, nullable=False), sa.Column("smoothed", sa.Float, nullable=False),
            sa.Column("alert", sa.Boolean, nullable=False), sa.Column("drift", sa.Boolean, nullable=False),
            sa.Column("learning", sa.Boolean, nullable=False), sa.Column("summary", sa.Text)]


def upgrade() -> None:
    """Create the tables of revision 0001."""
    op.create_table("machines", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("name", sa.Text, nullable=False, unique=True),
                    sa.Column("first_seen", _TIME, nullable=False))
    op.create_table("windows", sa.Column("machine_id", sa.Integer, nullable=False), *_window_columns(),
                    sa.Column("n", sa.Integer, nullable=False, server_default="1"),
                    sa.Column("span", sa.Float, nullable=False, server_default="0"))
    op.create_index("ix_windows_machine_t", "windows", ["machine_id", "t"])
    op.create_table("latest", sa.Column("machine_id", sa.Integer, primary_key=True, autoincrement=False),
                    *_window_columns())
    op.create_table("events", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("t", _TIME, nullable=False), sa.Column("machine_id", sa.Integer),
                    sa.Column("kind", sa.Text, nullable=False),
                    sa.Column("data", sa.Text, nullable=False, server_default="{}"))
    op.create_index("ix_events_t", "events", ["t"])
    op.create_index("ix_events_machine_t", "events", ["machine_id", "t"])


def downgrade() -> None:
    """Drop them."""
    for table in ("events", "latest", "windows", "machines"):
        op.drop_table(table)
