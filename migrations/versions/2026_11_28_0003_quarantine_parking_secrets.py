"""quarantined patterns, parked outbox rows, rejected bytes kept for a time, engine secrets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quarantine", sa.String(length=120), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("value", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(sa.Column("parked", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("kept_until", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "engine_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_engine_secrets")),
    )


def downgrade() -> None:
    op.drop_table("engine_secrets")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("kept_until")
        batch_op.drop_column("parked")
        batch_op.alter_column("value", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_column("quarantine")
