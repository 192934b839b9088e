"""The service layer: one inbound batch becomes one database transaction.

Order of work, which is the correctness argument for exactly-once effects:
1. Decode and validate every message outside the transaction; invalid ones become DLQ outbox rows.
2. In one transaction: lock the clock row, load the state the batch names, apply the events in delivery
   order (duplicates by event_id are skipped), write the changed state and every outbound message to the
   outbox, then commit.
3. Only after the commit may the caller acknowledge the input (commit Kafka offsets).
A crash before 3 redelivers the batch: its events are then duplicates and its outbox rows already exist
(same derived ids, insert-if-absent), so nothing is applied or queued twice.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain import ids
from engine.domain.codebook import CodeBook
from engine.domain.rules import Engine, Message, as_utc
from engine.faults import crash_point
from engine.settings import Settings
from engine.store import repository
from engine.store.repository import OutboxRow
from schemas import EscalationRaised, FeedbackNotification, InboundEvent, InvalidEvent, decode_event

log = logging.getLogger("docloop.service")

# A young PostgreSQL store has no column statistics, and without them the planner prices a lookup of a
# batch's ids (`encounter_id IN (...)`) as matching the whole table and scans it: each batch then costs more
# as the store grows, until autovacuum gets round to ANALYZE. So the engine refreshes the statistics itself
# after 2,000, 4,000, 8,000... events since it started (a few refreshes, each well under a second); beyond
# that, autovacuum's default of one ANALYZE per 10% growth keeps them current.
ANALYZE_FIRST = 2000


@dataclass(frozen=True)
class RawEvent:
    """Bytes as they arrived, with where they came from (used to derive the DLQ message id)."""

    value: bytes
    key: bytes | None
    origin: str


@dataclass
class BatchReport:
    events: Counter[str] = field(default_factory=Counter)  # "<event_type>:<result>"
    rejected: Counter[str] = field(default_factory=Counter)  # reason kind -> count
    notifications: Counter[str] = field(default_factory=Counter)  # "<kind>:<audience>"
    escalations: Counter[str] = field(default_factory=Counter)  # "<level>:<reason>"
    # For the batch's log line (ids, never contents); `add` keeps counts only, so totals stay small.
    first_event_id: str | None = None
    last_event_id: str | None = None
    pattern_ids: set[str] = field(default_factory=set)  # patterns that produced a message

    def add(self, other: BatchReport) -> None:
        self.events.update(other.events)
        self.rejected.update(other.rejected)
        self.notifications.update(other.notifications)
        self.escalations.update(other.escalations)


def reason_kind(reason: str) -> str:
    """A short label for metrics: the part of a DLQ reason before the first colon."""
    return reason.split(":", 1)[0].strip().replace(" ", "_")


def outbox_row(message: Message) -> OutboxRow:
    if isinstance(message, FeedbackNotification):
        return OutboxRow(
            message_id=message.notification_id,
            stream="notifications",
            key=message.recipient.id.encode(),
            value=message.model_dump_json().encode(),
            created_at=message.created_at,
        )
    assert isinstance(message, EscalationRaised)
    return OutboxRow(
        message_id=message.escalation_id,
        stream="escalations",
        key=message.department.encode(),
        value=message.model_dump_json().encode(),
        created_at=message.created_at,
    )


class Processor:
    def __init__(
        self,
        settings: Settings,
        database: AsyncEngine,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.database = database
        self.wall_clock = wall_clock
        self.codebook = CodeBook.load()
        key = settings.phi_hash_key.get_secret_value().encode()
        self.engine = Engine(settings.thresholds, self.codebook, lambda ref: _keyed_hash(key, ref))
        self.applied_since_start = 0
        self.next_analyze_at = ANALYZE_FIRST

    def decode(self, raw: RawEvent, wall: datetime) -> InboundEvent:
        if len(raw.value) > self.settings.max_event_bytes:
            raise InvalidEvent(f"too large: over the {self.settings.max_event_bytes}-byte limit")
        event = decode_event(raw.value)
        if as_utc(event.occurred_at) > wall + timedelta(minutes=self.settings.max_clock_skew_minutes):
            skew = self.settings.max_clock_skew_minutes
            raise InvalidEvent(f"occurred_at in the future: more than {skew} minutes ahead of wall time")
        return event

    async def apply_batch(self, raws: Sequence[RawEvent]) -> tuple[BatchReport, list[OutboxRow]]:
        """Apply a batch in one transaction; returns what happened and the outbox rows it queued."""
        wall = self.wall_clock()
        report = BatchReport()
        decoded: list[tuple[RawEvent, InboundEvent | InvalidEvent]] = []
        for raw in raws:
            try:
                decoded.append((raw, self.decode(raw, wall)))
            except InvalidEvent as error:
                decoded.append((raw, error))
        events = [item for _, item in decoded if not isinstance(item, InvalidEvent)]

        async with self.database.begin() as conn:
            clock = await repository.lock_clock(conn)
            latest = max((as_utc(e.occurred_at) for e in events), default=clock.clock)
            until = max(filter(None, [latest, clock.clock]), default=wall)
            loader = repository.BatchLoader(conn, self.codebook, self.settings.window_days)
            state = await loader.load(events, until, clock.clock)
            rows: list[OutboxRow] = []
            for raw, item in decoded:
                if isinstance(item, InvalidEvent):
                    report.rejected[reason_kind(item.reason)] += 1
                    rows.append(
                        OutboxRow(ids.dlq_id(raw.origin), "dlq", raw.key, raw.value, state.clock or wall, item.reason)
                    )
                    continue
                outcome = self.engine.process(item, state)
                report.events[f"{item.event_type}:{outcome.result}"] += 1
                report.first_event_id = report.first_event_id or item.event_id
                report.last_event_id = item.event_id
                for message in outcome.messages:
                    _count(report, message)
                    rows.append(outbox_row(message))
            changes = state.take_changes()
            await repository.save_changes(conn, changes, state.clock or wall, not loader.events_recorded)
            await repository.append_outbox(conn, rows)
            await repository.save_providers(conn, events)  # names for the report, latest per NPI
            await repository.save_clock(conn, state.clock, wall if events else clock.last_event_wall_at)
            crash_point("before_commit")
        self.applied_since_start += len(events)
        if self.applied_since_start >= self.next_analyze_at:
            self.next_analyze_at *= 2
            try:
                await repository.refresh_statistics(self.database)
            except Exception as error:  # the batch is committed; statistics can wait for autovacuum
                log.warning("statistics refresh failed", extra={"error": type(error).__name__})
        return report, rows

    async def dead_letter(self, raw: RawEvent, reason: str) -> None:
        """Send one record to the DLQ on its own (the engine could not apply it); nothing else changes."""
        async with self.database.begin() as conn:
            row = OutboxRow(ids.dlq_id(raw.origin), "dlq", raw.key, raw.value, self.wall_clock(), reason)
            await repository.append_outbox(conn, [row])

    async def advance_idle_clock(self) -> tuple[BatchReport, list[OutboxRow]]:
        """In a quiet hospital, let the clock follow wall time (minus the idle allowance) so timers still fire."""
        wall = self.wall_clock()
        idle = timedelta(minutes=self.settings.idle_advance_minutes)
        report = BatchReport()
        rows: list[OutboxRow] = []
        async with self.database.begin() as conn:
            clock = await repository.lock_clock(conn)
            if clock.last_event_wall_at is None or wall - clock.last_event_wall_at < idle:
                return report, rows  # events are flowing (or none ever came): event time rules
            target = wall - idle
            if clock.clock is not None and target <= clock.clock:
                return report, rows
            state = await repository.BatchLoader(conn, self.codebook, self.settings.window_days).load(
                [], target, clock.clock
            )
            for message in self.engine.advance(target, state):
                _count(report, message)
                rows.append(outbox_row(message))
            await repository.save_changes(conn, state.take_changes(), target)
            await repository.append_outbox(conn, rows)
            await repository.save_clock(conn, state.clock, clock.last_event_wall_at)
        return report, rows


def _count(report: BatchReport, message: Message) -> None:
    if message.pattern_id is not None:
        report.pattern_ids.add(message.pattern_id)
    if isinstance(message, FeedbackNotification):
        report.notifications[f"{message.kind}:{message.audience}"] += 1
    else:
        report.escalations[f"{message.level}:{message.reason}"] += 1


def _keyed_hash(key: bytes, patient_ref: str | None) -> str | None:
    if patient_ref is None:
        return None
    return hmac.new(key, patient_ref.encode(), hashlib.sha256).hexdigest()
