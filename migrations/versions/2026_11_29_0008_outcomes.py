"""truthful outcomes: exposure and dormancy, disputes and reviews, "no change needed" answers (issue #12)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exposure", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("dormant_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disputes", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch_op.add_column(sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("review_outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("alerts_no_change", sa.Integer(), nullable=False, server_default=sa.text("0")))
    # Notes signed before this migration count for no procedure in the effect figure (their codes were not kept).
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("procedure_codes", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_column("procedure_codes")
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        for name in ("alerts_no_change", "review_outcome", "reviewed_at", "disputed_at", "disputes", "dormant_at"):
            batch_op.drop_column(name)
        batch_op.drop_column("exposure")
