"""providers: the latest name and department seen per NPI, for the report

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("npi", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("npi", name=op.f("pk_providers")),
    )


def downgrade() -> None:
    op.drop_table("providers")
