"""drop indexes the keys already cover

The cases unique key repeats what the derived case_id primary key enforces; the patterns provider/status
index repeats the unique key's provider_npi prefix. Fewer indexes: cheaper inserts into large tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_cases_claim_id_line_number_root_cause"), type_="unique")

    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patterns_provider_status"))


def downgrade() -> None:
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patterns_provider_status"), ["provider_npi", "status"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_cases_claim_id_line_number_root_cause"), ["claim_id", "line_number", "root_cause"]
        )
