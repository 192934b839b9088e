"""patterns.provider_name: the provider's name from the latest denial, so escalations can name them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_name", sa.String(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_column("provider_name")
