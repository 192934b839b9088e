"""Table definitions. The schema itself is created only by the Alembic history in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on PostgreSQL (timestamptz) and SQLite (which stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Cents(TypeDecorator[Decimal]):
    """Money as whole cents: exact on every backend, and summable in SQL."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else int((value * 100).to_integral_value())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(int(value)) / 100


# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")

# The department stage's row: its clock (the watermark it has applied facts up to) and the partition count the
# store's task numbers were computed for.
engine_state = Table(
    "engine_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("clock", UTCDateTime, nullable=True),
    Column("last_event_wall_at", UTCDateTime, nullable=True),
    Column("partitions", Integer, nullable=True),
    Column("routing_clock", UTCDateTime, nullable=True),  # the routing stage's clock (the watermark it reached)
)

# One row per task (one partition number across the co-partitioned inbound topics): its own event-time clock.
# Every batch of a task locks its row; batches of different tasks never wait for each other.
tasks = Table(
    "tasks",
    metadata,
    Column("task", Integer, primary_key=True, autoincrement=False),
    Column("clock", UTCDateTime, nullable=True),
    Column("last_event_wall_at", UTCDateTime, nullable=True),
    # Wall time since which the task has had no input waiting; null while it has input waiting. For operators:
    # the department stage goes by input left in the broker and the settled time (engine/clocks.py).
    Column("idle_since", UTCDateTime, nullable=True),
    # The latest occurred_at the task applied from a record: its clock without what timers and the idle advance
    # moved (the department stage's settled time goes by this; engine/clocks.py).
    Column("event_clock", UTCDateTime, nullable=True),
)

# Where each input partition's applied prefix ends, committed with the state it produced: a task that moves
# to another replica resumes exactly here, and a record below it is never applied twice.
task_positions = Table(
    "task_positions",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("next_offset", BigInteger, nullable=False),
)

# Facts from the tasks to the department stage (pattern opened / closed), deleted once the stage applied them.
department_facts = Table(
    "department_facts",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("department", String(128), nullable=False),
    Column("root_cause", String(40), nullable=False),
    Column("pattern_id", String(36), nullable=False),
    Column("provider_npi", String(10), nullable=False),
    Column("opened", Boolean, nullable=False),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("snapshot", JSON, nullable=False),
)

# The department stage's state: the open patterns of each (department, root cause), as their facts told.
department_open = Table(
    "department_open",
    metadata,
    Column("department", String(128), primary_key=True),
    Column("root_cause", String(40), primary_key=True),
    Column("pattern_id", String(36), primary_key=True),
    Column("provider_npi", String(10), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("snapshot", JSON, nullable=False),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("event_type", String(32), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("claim_id", String(128), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("root_cause", String(40), nullable=False),
    Column("provider_npi", String(10), nullable=False),
    Column("department", String(128), nullable=False),
    Column("procedure_code", String(16), nullable=False),
    Column("modifiers", JSON, nullable=False),
    Column("encounter_id", String(128), nullable=False, index=True),
    Column("service_date", Date, nullable=False),
    Column("amount", Cents, nullable=False),
    Column("reason_codes", JSON, nullable=False),
    Column("payer_id", String(128), nullable=False),
    Column("pattern_id", String(36), nullable=False),
    Column("post_feedback", Boolean, nullable=False),
    Column("first_denied_at", UTCDateTime, nullable=False),
    Column("last_denied_at", UTCDateTime, nullable=False),
    Column("denial_count", Integer, nullable=False),
    Column("note_id", String(128), nullable=True),
    Column("patient_hash", String(64), nullable=True),
    Column("task", Integer, nullable=False, server_default="0"),
    # No unique (claim_id, line_number, root_cause, provider_npi): case_id is derived from exactly those
    # (engine/domain/ids.py), so the primary key already enforces it, and every index is paid for on each insert.
    Index("ix_cases_pattern_service_date", "pattern_id", "service_date"),
)

patterns = Table(
    "patterns",
    metadata,
    Column("pattern_id", String(36), primary_key=True),
    Column("provider_npi", String(10), nullable=False),
    Column("root_cause", String(40), nullable=False),
    Column("procedure_code", String(16), nullable=False),
    Column("episode", Integer, nullable=False),
    Column("department", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("case_count", Integer, nullable=False),
    Column("post_feedback_cases", Integer, nullable=False),
    Column("amount_at_risk", Cents, nullable=False),
    Column("reason_codes", JSON, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("last_service_date", Date, nullable=True),
    Column("billed_with_modifier_25", Boolean, nullable=False),
    Column("opened_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("ack_response", String(64), nullable=True),
    Column("reminded", Boolean, nullable=False),
    Column("compliant_notes", Integer, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("next_due_at", UTCDateTime, nullable=True),
    Column("escalations", JSON, nullable=False),
    Column("quarantine", String(120), nullable=True),
    Column("task", Integer, nullable=False, server_default="0"),
    Column("provider_name", String(256), nullable=True),
    Column("exposure", JSON, nullable=False),
    Column("dormant_at", UTCDateTime, nullable=True),
    Column("disputes", Integer, nullable=False),
    Column("disputed_at", UTCDateTime, nullable=True),
    Column("reviewed_at", UTCDateTime, nullable=True),
    Column("review_outcome", String(16), nullable=True),
    Column("alerts_no_change", Integer, nullable=False),
    # Also serves "open patterns of these providers" through its provider_npi prefix.
    UniqueConstraint("provider_npi", "root_cause", "procedure_code", "episode"),
    Index("ix_patterns_department_root_cause_status", "department", "root_cause", "status"),
    Index("ix_patterns_task_next_due_at", "task", "next_due_at"),
)

notes = Table(
    "notes",
    metadata,
    Column("note_id", String(128), primary_key=True),
    Column("encounter_id", String(128), nullable=False, index=True),
    Column("provider_npi", String(10), nullable=False),
    Column("service_date", Date, nullable=False),
    Column("signed_at", UTCDateTime, nullable=False),
    Column("patient_hash", String(64), nullable=True),
    Column("pre_bill_alerted", Boolean, nullable=False),
    Column("compliant_for", JSON, nullable=False),
    Column("task", Integer, nullable=False, server_default="0"),
    Column("procedure_codes", JSON, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("pattern_id", String(36), nullable=False, index=True),
)

escalations = Table(
    "escalations",
    metadata,
    Column("escalation_id", String(36), primary_key=True),
    Column("level", Integer, nullable=False),
    Column("reason", String(40), nullable=False),
    Column("pattern_id", String(36), nullable=True, index=True),
    Column("department", String(128), nullable=False),
    Column("root_cause", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("summary", String(1000), nullable=False),
    # The NPIs it names (comma separated): what the report shows once the published message is pruned.
    Column("providers", String(2000), nullable=True),
)

# Who an NPI is, as the latest event that named the provider said (for the report; the rules never read it).
providers = Table(
    "providers",
    metadata,
    Column("npi", String(10), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("department", String(128), nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
)

# The outbox: every outbound message, written in the same transaction as the state that caused it.
# `seq` is the publication order; `published_at` is set once the broker has confirmed the message, or once
# the relay parked it (`parked`: publishing failed in a way retrying cannot fix). Rejected bytes (DLQ rows)
# are dropped from `value` once published, unless they had to be replaced by a small record: then the
# original stays until `kept_until`, for operators. Published rows are pruned after a retention.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("stream", String(16), nullable=False),  # notifications | escalations | dlq
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=True),  # null: a tombstone, or rejected bytes no longer kept
    Column("reason", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime, nullable=True),
    Column("parked", String(200), nullable=True),
    Column("kept_until", UTCDateTime, nullable=True),
    Index("ix_outbox_unpublished", "published_at", "seq"),
)

# Values every replica must agree on and that are made once, at the first start (the PHI hash key when
# DOCLOOP_PHI_HASH_KEY is unset).
engine_secrets = Table(
    "engine_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


# ---- the routing stage (engine/domain/routing.py): its own key (the recipient) and clock ----------------------

# Per-fact messages the tasks and the department stage made, waiting for the routing stage to decide their
# delivery; it moves them to the outbox (with `delivery` set) once the watermark has passed their time.
routing_queue = Table(
    "routing_queue",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("stream", String(16), nullable=False),  # notifications | escalations
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_routing_queue_created_at", "created_at"),
)

# One row per (route, group_by values): what waits for its next digest and when it last notified.
routing_groups = Table(
    "routing_groups",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("route", String(128), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("audience", String(16), nullable=False),
    Column("pending", JSON, nullable=False),  # [{"stream": ..., "value": <the message's JSON>}]
    Column("first_pending_at", UTCDateTime, nullable=True),
    Column("last_notified_at", UTCDateTime, nullable=True),
    Column("next_flush_at", UTCDateTime, nullable=True),
    Index("ix_routing_groups_next_flush_at", "next_flush_at"),
)

# What the routing stage applies at its event time besides messages: inbound FeedbackSilence events (kind
# `silence`) and the department stage's closed systemic escalations (kind `systemic_closed`, ends inhibitions).
routing_events = Table(
    "routing_events",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("value", LargeBinary, nullable=False),
)

routing_silences = Table(
    "routing_silences",
    metadata,
    Column("silence_id", String(128), primary_key=True),
    Column("matchers", JSON, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("author", String(256), nullable=False),
    Column("reason", String(1000), nullable=False),
)

# Open inhibitions (a systemic escalation for a department and root cause holds that pair's per-provider ones).
routing_inhibitions = Table(
    "routing_inhibitions",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("rule", String(128), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
)

# What each recipient got per day (engine/volume.py counts): the report's volume figures, kept after the
# outbox rows are pruned. outcome: received, digests, grouped, inhibited, silenced, rate_limited.
routing_volume = Table(
    "routing_volume",
    metadata,
    Column("recipient", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Column("audience", String(16), nullable=False),
    Column("count", Integer, nullable=False),
)
