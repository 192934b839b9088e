"""the routing stage: queued messages, digest groups, silences, closures, inhibitions, its clock; escalations.providers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("engine_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routing_clock", TIMESTAMP, nullable=True))
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("providers", sa.String(length=2000), nullable=True))
    op.create_table(
        "routing_queue",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_routing_queue")),
        sa.UniqueConstraint("message_id", name=op.f("uq_routing_queue_message_id")),
    )
    with op.batch_alter_table("routing_queue", schema=None) as batch_op:
        batch_op.create_index("ix_routing_queue_created_at", ["created_at"], unique=False)
    op.create_table(
        "routing_groups",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("route", sa.String(length=128), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=False),
        sa.Column("first_pending_at", TIMESTAMP, nullable=True),
        sa.Column("last_notified_at", TIMESTAMP, nullable=True),
        sa.Column("next_flush_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_routing_groups")),
    )
    with op.batch_alter_table("routing_groups", schema=None) as batch_op:
        batch_op.create_index("ix_routing_groups_next_flush_at", ["next_flush_at"], unique=False)
    op.create_table(
        "routing_events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_routing_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_routing_events_event_id")),
    )
    op.create_table(
        "routing_silences",
        sa.Column("silence_id", sa.String(length=128), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", TIMESTAMP, nullable=False),
        sa.Column("ends_at", TIMESTAMP, nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("silence_id", name=op.f("pk_routing_silences")),
    )
    op.create_table(
        "routing_inhibitions",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("opened_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_routing_inhibitions")),
    )
    op.create_table(
        "routing_volume",
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("recipient", "day", "outcome", name=op.f("pk_routing_volume")),
    )


def downgrade() -> None:
    tables = ("routing_volume", "routing_inhibitions", "routing_silences", "routing_events", "routing_groups")
    for table in (*tables, "routing_queue"):
        op.drop_table(table)
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_column("providers")
    with op.batch_alter_table("engine_state", schema=None) as batch_op:
        batch_op.drop_column("routing_clock")
