"""tasks.event_clock: the latest event time a task applied from a record (its clock also moves by timers)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_clock", sa.DateTime(timezone=True), nullable=True))
    # The best known for tasks that applied events before: their clock (it may include an idle advance).
    op.execute("UPDATE tasks SET event_clock = clock WHERE last_event_wall_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("event_clock")
