"""tasks: per-partition clocks and input positions, task numbers on state rows, the department stage

Existing rows get the task of their provider for DOCLOOP_TOPIC_PARTITIONS (default 6) partitions, and the
store records that count: serve refuses to run with another.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("engine_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partitions", sa.Integer(), nullable=True))
    for table in ("cases", "patterns", "notes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("task", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patterns_next_due_at"))
        batch_op.create_index("ix_patterns_task_next_due_at", ["task", "next_due_at"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("task", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("clock", TIMESTAMP, nullable=True),
        sa.Column("last_event_wall_at", TIMESTAMP, nullable=True),
        sa.Column("idle_since", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("task", name=op.f("pk_tasks")),
    )
    op.create_table(
        "task_positions",
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", name=op.f("pk_task_positions")),
    )
    op.create_table(
        "department_facts",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("root_cause", sa.String(length=40), nullable=False),
        sa.Column("pattern_id", sa.String(length=36), nullable=False),
        sa.Column("provider_npi", sa.String(length=10), nullable=False),
        sa.Column("opened", sa.Boolean(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_department_facts")),
    )
    op.create_index(op.f("ix_department_facts_at"), "department_facts", ["at"], unique=False)
    op.create_table(
        "department_open",
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("root_cause", sa.String(length=40), nullable=False),
        sa.Column("pattern_id", sa.String(length=36), nullable=False),
        sa.Column("provider_npi", sa.String(length=10), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("department", "root_cause", "pattern_id", name=op.f("pk_department_open")),
    )
    _assign_tasks()


def _assign_tasks() -> None:
    from engine.partitioning import task_of_npi

    partitions = int(os.environ.get("DOCLOOP_TOPIC_PARTITIONS", "6"))
    bind = op.get_bind()
    npis = set()
    for table in ("cases", "patterns", "notes"):
        npis |= {row[0] for row in bind.execute(sa.text(f"SELECT DISTINCT provider_npi FROM {table}"))}
    for npi in sorted(npis):
        task = task_of_npi(npi, partitions)
        if task:
            for table in ("cases", "patterns", "notes"):
                bind.execute(
                    sa.text(f"UPDATE {table} SET task = :task WHERE provider_npi = :npi"), {"task": task, "npi": npi}
                )
    if npis:
        bind.execute(sa.text("UPDATE engine_state SET partitions = :n"), {"n": partitions})


def downgrade() -> None:
    op.drop_table("department_open")
    op.drop_index(op.f("ix_department_facts_at"), table_name="department_facts")
    op.drop_table("department_facts")
    op.drop_table("task_positions")
    op.drop_table("tasks")
    with op.batch_alter_table("patterns", schema=None) as batch_op:
        batch_op.drop_index("ix_patterns_task_next_due_at")
        batch_op.create_index(batch_op.f("ix_patterns_next_due_at"), ["next_due_at"], unique=False)
    for table in ("notes", "patterns", "cases"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("task")
    with op.batch_alter_table("engine_state", schema=None) as batch_op:
        batch_op.drop_column("partitions")
