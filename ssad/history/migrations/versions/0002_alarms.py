"""Alarms for the console: each alert event with its explanation, picture, a few clips, and the operator's label."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    """Add the alarms and their clips."""
    op.create_table("alarms", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("machine_id", sa.Integer, nullable=False), sa.Column("started", _TIME, nullable=False),
                    sa.Column("ended", _TIME), sa.Column("kind", sa.Text, nullable=False),
                    sa.Column("summary", sa.Text, nullable=False),
                    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
                    sa.Column("picture", sa.LargeBinary), sa.Column("label", sa.Text), sa.Column("labelled", _TIME),
                    sa.Column("version", sa.Integer))
    op.create_index("ix_alarms_machine_started", "alarms", ["machine_id", "started"])
    op.create_table("alarm_clips", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("alarm_id", sa.Integer, nullable=False), sa.Column("t", _TIME, nullable=False),
                    sa.Column("wav", sa.LargeBinary, nullable=False))
    op.create_index("ix_alarm_clips_alarm_id", "alarm_clips", ["alarm_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("alarm_clips")
    op.drop_table("alarms")
