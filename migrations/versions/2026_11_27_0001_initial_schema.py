"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("claim_id", sa.String(length=128), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("root_cause", sa.String(length=40), nullable=False),
        sa.Column("provider_npi", sa.String(length=10), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("procedure_code", sa.String(length=16), nullable=False),
        sa.Column("modifiers", sa.JSON(), nullable=False),
        sa.Column("encounter_id", sa.String(length=128), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("payer_id", sa.String(length=128), nullable=False),
        sa.Column("pattern_id", sa.String(length=36), nullable=False),
        sa.Column("post_feedback", sa.Boolean(), nullable=False),
        sa.Column("first_denied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_denied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("denial_count", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.String(length=128), nullable=True),
        sa.Column("patient_hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_cases")),
        sa.UniqueConstraint(
            "claim_id", "line_number", "root_cause", name=op.f("uq_cases_claim_id_line_number_root_cause")
        ),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_encounter_id"), ["encounter_id"], unique=False)
        batch_op.create_index("ix_cases_pattern_service_date", ["pattern_id", "service_date"], unique=False)

    op.create_table(
        "engine_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clock", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_wall_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_state")),
    )
    op.create_table(
        "escalations",
        sa.Column("escalation_id", sa.String(length=36), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("pattern_id", sa.String(length=36), nullable=True),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("root_cause", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("escalation_id", name=op.f("pk_escalations")),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_escalations_pattern_id"), ["pattern_id"], unique=False)

    op.create_table(
        "notes",
        sa.Column("note_id", sa.String(length=128), nullable=False),
        sa.Column("encounter_id", sa.String(length=128), nullable=False),
        sa.Column("provider_npi", sa.String(length=10), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_hash", sa.String(length=64), nullable=True),
        sa.Column("pre_bill_alerted", sa.Boolean(), nullable=False),
        sa.Column("compliant_for", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("note_id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_encounter_id"), ["encounter_id"], unique=False)

    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("pattern_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_pattern_id"), ["pattern_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_message_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_unpublished", ["published_at", "seq"], unique=False)

    op.create_table(
        "patterns",
        sa.Column("pattern_id", sa.String(length=36), nullable=False),
        sa.Column("provider_npi", sa.String(length=10), nullable=False),
        sa.Column("root_cause", sa.String(length=40), nullable=False),
        sa.Column("procedure_code", sa.String(length=16), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("post_feedback_cases", sa.Integer(), nullable=False),
        sa.Column("amount_at_risk", sa.BigInteger(), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("last_service_date", sa.Date(), nullable=True),
        sa.Column("billed_with_modifier_25", sa.Boolean(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_response", sa.String(length=64), nullable=True),
        sa.Column("reminded", sa.Boolean(), nullable=False),
        sa.Column("compliant_notes", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalations", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("pattern_id", name=op.f("pk_patterns")),
        sa.UniqueConstraint(
            "provider_npi",
            "root_cause",
            "procedure_code",
            "episode",
            name=op.f("uq_patterns_provider_npi_root_cause_procedure_code_episode"),
        ),
    )
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patterns_department_root_cause_status", ["department", "root_cause", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_patterns_next_due_at"), ["next_due_at"], unique=False)
        batch_op.create_index("ix_patterns_provider_status", ["provider_npi", "status"], unique=False)

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )


def downgrade() -> None:

    op.drop_table("processed_events")
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_index("ix_patterns_provider_status")
        batch_op.drop_index(batch_op.f("ix_patterns_next_due_at"))
        batch_op.drop_index("ix_patterns_department_root_cause_status")

    op.drop_table("patterns")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_unpublished")

    op.drop_table("outbox")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_pattern_id"))

    op.drop_table("notifications")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notes_encounter_id"))

    op.drop_table("notes")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_escalations_pattern_id"))

    op.drop_table("escalations")
    op.drop_table("engine_state")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_pattern_service_date")
        batch_op.drop_index(batch_op.f("ix_cases_encounter_id"))

    op.drop_table("cases")
