"""The service layer: one inbound batch becomes one database transaction.

Order of work, which is the correctness argument for exactly-once effects:
1. Decode and validate every message outside the transaction; invalid ones become DLQ outbox rows.
2. In one transaction: lock the task's row, load the state the batch names, apply the events in event-time
   order (duplicates by event_id are skipped), write the changed state, rejected input to the outbox and
   every outbound message to the routing queue, then commit. The department and routing stages later move
   the messages, with their delivery decided, to the outbox in their own transactions.
3. Only after the commit may the caller acknowledge the input (commit Kafka offsets).
A crash before 3 redelivers the batch: its events are then duplicates and its outbox rows already exist
(same derived ids, insert-if-absent), so nothing is applied or queued twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clocks import ClockHistory
from engine.domain import ids
from engine.domain.codebook import CodeBook
from engine.domain.departments import DepartmentStage
from engine.domain.routing import Routed, Router
from engine.domain.rules import Engine, Message, as_utc
from engine.domain.state import Changes
from engine.faults import crash_point
from engine.settings import Settings
from engine.store import repository
from engine.store import routing as routing_store
from engine.store import tables as t
from engine.store.repository import OutboxRow
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification, InboundEvent, InvalidEvent, decode_event
from schemas.decoding import decode_silence

log = logging.getLogger("docloop.service")

STORE_TRIES = 3  # a single event the store refuses is tried this many times before it goes to the DLQ
STORE_RETRY_SECONDS = 0.5  # times the try number: 0.5 s, then 1 s

# A young PostgreSQL store has no column statistics, and without them the planner prices a lookup of a
# batch's ids (`encounter_id IN (...)`) as matching the whole table and scans it: each batch then costs more
# as the store grows, until autovacuum gets round to ANALYZE. So the engine refreshes the statistics itself
# after 2,000, 4,000, 8,000... events since it started (a few refreshes, each well under a second); beyond
# that, autovacuum's default of one ANALYZE per 10% growth keeps them current.
ANALYZE_FIRST = 2000


@dataclass(frozen=True)
class RawEvent:
    """Bytes as they arrived (None for a tombstone), with where they came from (used to derive the DLQ id).

    Records from Kafka also carry their topic, partition and offset: a task's transaction stores how far each
    input partition is applied, and skips what is below it. `decoded` caches the decoding done on arrival
    (to merge a task's inputs by event time)."""

    value: bytes | None
    key: bytes | None
    origin: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    decoded: InboundEvent | InvalidEvent | None = field(default=None, compare=False)
    at: datetime | None = None  # its event time (occurred_at, UTC) once decoded; None when invalid
    arrived: float | None = field(default=None, compare=False)  # when it reached the broker (serve: monotonic)


class StoreUnavailable(Exception):
    """The store does not answer: the caller waits and retries the batch; nothing was committed."""


@dataclass(frozen=True)
class TaskBatch:
    """Records of one task to apply; `idle`: the task has no more input waiting."""

    task: int
    raws: Sequence[RawEvent]
    idle: bool = False


class EventFailed(Exception):
    """The engine raised while applying one event of a batch (a defect): that event is isolated."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def failure_reason(error: BaseException, event_id: str) -> str:
    """Where the engine failed, for the DLQ and the logs: the exception class and the engine function, never
    the exception's message (it may quote field values)."""
    where = "engine"
    for frame in traceback.extract_tb(error.__traceback__):
        module = frame.filename.replace("\\", "/")
        if "/engine/" in module:
            where = module.rsplit("/engine/", 1)[1].removesuffix(".py").replace("/", ".") + "." + frame.name
    return f"engine error: {type(error).__name__} in {where} while applying event {event_id}"


@dataclass
class BatchReport:
    events: Counter[str] = field(default_factory=Counter)  # "<event_type>:<result>"
    rejected: Counter[str] = field(default_factory=Counter)  # reason kind -> count
    notifications: Counter[str] = field(default_factory=Counter)  # "<kind>:<audience>"
    escalations: Counter[str] = field(default_factory=Counter)  # "<level>:<reason>"
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (pattern_id, why): few, and logged
    facts: int = 0  # told to the department stage
    routed: int = 0  # queued messages and routing events the routing stage applied
    deliveries: Counter[str] = field(default_factory=Counter)  # "<delivery>:<audience>", digests as "digest_sent"
    # For the batch's log line (ids, never contents); `add` keeps counts only, so totals stay small.
    first_event_id: str | None = None
    last_event_id: str | None = None
    pattern_ids: set[str] = field(default_factory=set)  # patterns that produced a message

    def add(self, other: BatchReport) -> None:
        self.events.update(other.events)
        self.rejected.update(other.rejected)
        self.notifications.update(other.notifications)
        self.escalations.update(other.escalations)
        self.quarantined.extend(other.quarantined)
        self.facts += other.facts
        self.routed += other.routed
        self.deliveries.update(other.deliveries)


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
        configured = settings.phi_hash_key
        self.phi_key: bytes | None = configured.get_secret_value().encode() if configured else None
        self.engine = Engine(settings.thresholds, self.codebook, self._hash_patient)
        self.departments = DepartmentStage(settings.systemic_providers, self.engine.compose)
        self.router = Router(self.engine.compose.routing)
        self.applied_since_start = 0
        self.sqlite_writer = asyncio.Lock()  # see writing()
        self.next_analyze_at = ANALYZE_FIRST

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Around a transaction that writes task state. SQLite takes its write lock only at the first write, so
        two such transactions could each read, and the later writer overwrite the earlier one's rows: on SQLite
        they take turns here (serve's tasks do already; the department stage fires quiet tasks' timers too).
        PostgreSQL has the task's row lock."""
        if self.database.dialect.name != "sqlite":
            yield
            return
        async with self.sqlite_writer:
            yield

    def _hash_patient(self, patient_ref: str | None) -> str | None:
        assert self.phi_key is not None, "the PHI key is loaded before any event is applied"
        return _keyed_hash(self.phi_key, patient_ref)

    async def load_phi_key(self, warn: bool = True) -> None:
        """The configured key, or the store's own: made at random at the first start and kept with the store,
        so every replica and restart hashes alike. A constant key in the code would make every stored hash
        reversible (an 8-digit MRN space takes minutes on one core)."""
        if self.phi_key is not None:
            return
        self.phi_key = (await repository.phi_key(self.database, warn)).encode()

    def decode(self, raw: RawEvent, wall: datetime) -> InboundEvent:
        if raw.value is None:
            raise InvalidEvent("tombstone: a record with a null value is not an event")
        if len(raw.value) > self.settings.max_event_bytes:
            raise InvalidEvent(f"too large: over the {self.settings.max_event_bytes}-byte limit")
        event = decode_event(raw.value)
        if event.occurred_at > wall + timedelta(minutes=self.settings.max_clock_skew_minutes):  # (aware: no conversion)
            skew = self.settings.max_clock_skew_minutes
            raise InvalidEvent(f"occurred_at in the future: more than {skew} minutes ahead of wall time")
        return event

    def decoded(self, raw: RawEvent, wall: datetime) -> InboundEvent | InvalidEvent:
        if raw.decoded is not None:
            return raw.decoded
        try:
            return self.decode(raw, wall)
        except InvalidEvent as error:
            return error

    async def apply(self, raws: Sequence[RawEvent], task: int = 0, idle: bool = False) -> BatchReport:
        """Apply a batch so that no single event can stop it; raises only StoreUnavailable.

        Isolation costs in proportion to the bad events, not to the batch:
        - an event the engine raises on (a defect) is known by its index: the batch is applied again
          without it, and it goes to the DLQ with a reason that names the event id and where it failed;
        - a failure while storing (the store answers, but refuses what the batch wrote) names no event:
          the batch is split in halves until the one event that cannot be stored is alone; that one is tried
          STORE_TRIES times before it goes to the DLQ (the error may have passed).
        """
        failed: dict[int, str] = {}
        tries = 0
        while True:
            try:
                return (await self.apply_batch(raws, failed, task, idle))[0]
            except EventFailed as error:
                log.error("event isolated", extra={"reason": error.reason})
                failed[error.index] = error.reason
            except Exception as error:
                if not await self.store_answers():
                    raise StoreUnavailable from error
                if len(raws) == 1:
                    # A store error may pass (a reset connection, a deadlock, a failover under way): the event
                    # is tried again before it is taken for one the store cannot hold (replay would apply it).
                    tries += 1
                    if tries < STORE_TRIES:
                        log.warning("event failed while storing; trying again", extra={"error": type(error).__name__})
                        await asyncio.sleep(STORE_RETRY_SECONDS * tries)
                        continue
                    reason = f"store error: {type(error).__name__} while storing this event"
                    log.error("event isolated", extra={"reason": reason, "origin": raws[0].origin})
                    try:
                        return (await self.apply_batch(raws, {0: reason}, task, idle))[0]
                    except Exception as again:  # not even its dead letter is stored: the store takes no writes
                        raise StoreUnavailable from again
                log.warning("batch failed while storing; splitting it", extra={"error": type(error).__name__})
                half = len(raws) // 2
                report = await self.apply(raws[:half], task, False)
                report.add(await self.apply(raws[half:], task, idle))
                return report

    async def store_answers(self) -> bool:
        try:
            async with self.database.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def apply_batch(
        self, raws: Sequence[RawEvent], failed: dict[int, str] | None = None, task: int = 0, idle: bool = False
    ) -> tuple[BatchReport, list[OutboxRow]]:
        """Apply a batch of one task's events, in the order given, in one transaction; returns what happened
        and the outbox rows it queued.

        `failed` names events (by index) to send to the DLQ with the given reason instead of applying them.
        `idle`: the caller has no more input of this task waiting (the department stage need not wait for it).
        Raises EventFailed when the engine raises on one event (nothing is committed then)."""
        return await self.apply_batches([TaskBatch(task, raws, idle)], failed)

    async def apply_together(self, batches: Sequence[TaskBatch]) -> BatchReport:
        """Apply several tasks' batches in one transaction (at a low rate each task has a record or two at a
        time: one transaction each would cost more than the records do). Anything that fails it, each batch
        is applied again on its own (`apply`), where one event cannot stop the others. Raises only
        StoreUnavailable."""
        if len(batches) == 1:
            return await self.apply(batches[0].raws, batches[0].task, batches[0].idle)
        try:
            return (await self.apply_batches(sorted(batches, key=lambda batch: batch.task)))[0]
        except repository.SharedConflict:
            pass  # (two tasks meet on one provider, case, encounter or notification: rare, and expected)
        except Exception as error:
            log.info("tasks applied together failed; each on its own now", extra={"error": type(error).__name__})
        report = BatchReport()
        for batch in batches:
            report.add(await self.apply(batch.raws, batch.task, batch.idle))
        return report

    async def apply_batches(
        self, batches: Sequence[TaskBatch], failed: dict[int, str] | None = None
    ) -> tuple[BatchReport, list[OutboxRow]]:
        """Apply tasks' batches (one per task) in one transaction: each task's events in the order given, on
        its own clock and state, as if each batch had its own transaction. `failed` is for the first batch."""
        failed = failed or {}
        tasks = [batch.task for batch in batches]
        assert tasks == sorted(set(tasks)), "one batch per task, in task order (as the loader takes them)"
        await self.load_phi_key()
        wall = self.wall_clock()
        report = BatchReport()
        async with self.writing(), self.database.begin() as conn:
            clocks = await repository.lock_tasks(conn, tasks)
            # Records below an input partition's stored position are applied already (a redelivery after a
            # crash before the offset commit, or a replica that lost the task while it waited for the lock).
            located = [
                (r.topic, r.partition)
                for b in batches
                for r in b.raws
                if r.topic is not None and r.partition is not None
            ]
            applied_up_to = await repository.positions(conn, located) if located else {}
            moved: dict[tuple[str, int], int] = {}
            decoded: dict[int, list[tuple[int, RawEvent, InboundEvent | InvalidEvent]]] = {}
            loads: dict[int, repository.TaskLoad] = {}
            for number, batch in enumerate(batches):
                items = decoded[batch.task] = []
                for index, raw in enumerate(batch.raws):
                    if raw.topic is not None and raw.partition is not None and raw.offset is not None:
                        where = (raw.topic, raw.partition)
                        if raw.offset < applied_up_to.get(where, 0):
                            continue
                        moved[where] = max(moved.get(where, 0), raw.offset + 1)
                    given = failed.get(index) if number == 0 else None
                    items.append((index, raw, InvalidEvent(given) if given is not None else self.decoded(raw, wall)))
                clock = clocks[batch.task].clock
                events = [item for _, _, item in items if not isinstance(item, InvalidEvent)]
                latest = max((as_utc(e.occurred_at) for e in events), default=clock)
                loads[batch.task] = repository.TaskLoad(events, max(filter(None, [latest, clock]), default=wall), clock)
            loader = repository.BatchLoader(conn, self.codebook, self.settings.window_days, wall)
            states = await loader.load_tasks(loads)
            rows: list[OutboxRow] = []
            changes: list[tuple[int, Changes]] = []
            for batch in batches:
                state = states[batch.task]
                for index, raw, item in decoded[batch.task]:
                    if isinstance(item, InvalidEvent):
                        report.rejected[reason_kind(item.reason)] += 1
                        rows.append(
                            OutboxRow(
                                ids.dlq_id(raw.origin), "dlq", raw.key, raw.value, state.clock or wall, item.reason
                            )
                        )
                        continue
                    try:
                        outcome = self.engine.process(item, state)
                    except Exception as error:
                        raise EventFailed(index, failure_reason(error, item.event_id)) from error
                    report.events[f"{item.event_type}:{outcome.result}"] += 1
                    report.first_event_id = report.first_event_id or item.event_id
                    report.last_event_id = item.event_id
                    for message in outcome.messages:
                        _count(report, message)
                        rows.append(outbox_row(message))
                report.quarantined.extend(state.quarantined)
                changes.append((batch.task, state.take_changes()))
                report.facts += len(changes[-1][1].facts)
            await repository.save_changes_of_tasks(conn, changes, wall, not loader.events_recorded)
            await _store_rows(conn, rows)
            events = [event for load in loads.values() for event in load.events]
            await repository.save_providers(conn, events)  # names for the report, latest per NPI
            saved = []
            for batch in batches:
                stored, state, applied = clocks[batch.task], states[batch.task], loads[batch.task].events
                event_clock = max(
                    filter(None, [stored.event_clock, *(as_utc(e.occurred_at) for e in applied)]), default=None
                )
                last_event_wall_at = wall if applied else stored.last_event_wall_at
                saved.append((batch.task, state.clock, last_event_wall_at, wall if batch.idle else None, event_clock))
            await repository.save_tasks(conn, saved)
            await repository.save_positions(conn, moved)
            crash_point("before_commit")
        _log_quarantined(report)
        self.applied_since_start += len(events)
        if self.applied_since_start >= self.next_analyze_at:
            self.next_analyze_at *= 2
            try:
                await repository.refresh_statistics(self.database)
            except Exception as error:  # the batch is committed; statistics can wait for autovacuum
                log.warning("statistics refresh failed", extra={"error": type(error).__name__})
        return report, rows

    async def advance_idle_clock(self, task: int = 0) -> tuple[BatchReport, list[OutboxRow]]:
        """In a quiet hospital, let a task's clock follow wall time (minus the idle allowance) so its timers
        still fire."""
        wall = self.wall_clock()
        idle = timedelta(minutes=self.settings.idle_advance_minutes)
        report = BatchReport()
        rows: list[OutboxRow] = []
        async with self.writing(), self.database.begin() as conn:
            clock = await repository.lock_task(conn, task)
            if clock.last_event_wall_at is None or wall - clock.last_event_wall_at < idle:
                return report, rows  # events are flowing (or none ever came): event time rules
            target = wall - idle
            if clock.clock is not None and target <= clock.clock:
                return report, rows
            loader = repository.BatchLoader(conn, self.codebook, self.settings.window_days, wall, task)
            state = await loader.load([], target, clock.clock)
            for message in self.engine.advance(target, state):
                _count(report, message)
                rows.append(outbox_row(message))
            report.quarantined.extend(state.quarantined)
            changes = state.take_changes()
            report.facts += len(changes.facts)
            await repository.save_changes(conn, changes, wall, True, task)
            await _store_rows(conn, rows)
            await repository.save_task(conn, task, state.clock, clock.last_event_wall_at, wall, clock.event_clock)
        _log_quarantined(report)
        return report, rows

    async def run_department_stage(
        self,
        everything: bool = False,
        behind: set[int] | None = None,
        history: ClockHistory | None = None,
        asked_at: float | None = None,
        held: dict[int, datetime | None] | None = None,
    ) -> BatchReport:
        """One pass of the department stage over the facts every task's clock has passed, then of the routing
        stage over the messages before the same watermark (all of them with `everything`, as replay does at
        the end of its input: then the digests still pending are flushed too). `behind`: the tasks with input
        in the broker not applied yet, asked at `asked_at` (monotonic); `held`: of those, the ones that hold
        back every record they have in the broker, with the earliest time among them (TaskRunner.held_back);
        `history`: serve's record of the tasks' clocks (engine/clocks.py). `facts + routed` is 0 when there
        was nothing to do."""
        report = BatchReport()
        idle = timedelta(minutes=self.settings.idle_advance_minutes)
        # Where the ticker puts quiet tasks, for one that never had an event, once serve has run that long.
        idle_advanced_to = (
            self.wall_clock() - idle if history is not None and history.age() >= idle.total_seconds() else None
        )

        async def advance(conn: AsyncConnection, targets: dict[int, datetime]) -> None:
            for task, target in sorted(targets.items()):
                report.add(await self._advance_task(conn, task, target))

        async with self.writing(), self.database.begin() as conn:
            stage = await repository.run_department_stage(
                conn,
                self.departments,
                self.settings.topic_partitions,
                everything,
                behind,
                history,
                asked_at,
                advance,
                idle_advanced_to,
                held,
            )
            report.facts += stage.facts
            await routing_store.queue(conn, [outbox_row(e) for e in stage.escalations])
            await routing_store.record_closures(conn, [routing_store.Closure(*c) for c in stage.closed])
            if stage.may_route:
                last_facts = stage.facts < repository.STAGE_PASS_LIMIT
                routed, report.routed = await routing_store.run_routing_stage(
                    conn, self.router, stage.route_until, everything and last_facts
                )
                for message in routed:
                    report.deliveries[_delivery(message)] += 1
        for escalation in stage.escalations:
            _count(report, escalation)
        _log_quarantined(report)
        return report

    async def advance_tasks_to_furthest(self) -> BatchReport:
        """Replay, at the end of its input: every task's timers up to the furthest task's clock."""
        report = BatchReport()
        partitions = self.settings.topic_partitions
        async with self.database.connect() as conn:
            furthest = await conn.scalar(select(func.max(t.tasks.c.clock)).where(t.tasks.c.task < partitions))
        if furthest is None:
            return report
        for task in range(partitions):
            async with self.writing(), self.database.begin() as conn:
                report.add(await self._advance_task(conn, task, furthest))
        _log_quarantined(report)
        return report

    async def _advance_task(self, conn: AsyncConnection, task: int, target: datetime) -> BatchReport:
        """Fire a quiet task's timers due by `target`, which the department stage is about to pass: as its next
        event would have (replay fires them then, in due order; firing them in two steps gives the same). In the
        stage's transaction, under the task's lock (a batch of its owner in progress is waited for)."""
        report = BatchReport()
        clock = await repository.lock_task(conn, task)
        if clock.clock is not None and target <= clock.clock:
            return report  # moved on meanwhile
        wall = self.wall_clock()
        loader = repository.BatchLoader(conn, self.codebook, self.settings.window_days, wall, task)
        state = await loader.load([], target, clock.clock)
        messages = self.engine.advance(target, state)
        for message in messages:
            _count(report, message)
        rows = [outbox_row(message) for message in messages]
        report.quarantined.extend(state.quarantined)
        changes = state.take_changes()
        report.facts += len(changes.facts)
        await repository.save_changes(conn, changes, wall, True, task)
        await _store_rows(conn, rows)
        await repository.save_task(
            conn, task, state.clock, clock.last_event_wall_at, clock.idle_since, clock.event_clock
        )
        return report

    async def record_silence(self, raw: RawEvent) -> str | None:
        """Keep a FeedbackSilence for the routing stage (it applies at its event time); the reason when
        it is invalid (the caller sends it to the DLQ)."""
        try:
            if raw.value is None:
                raise InvalidEvent("tombstone: a record with a null value is not an event")
            if len(raw.value) > self.settings.max_event_bytes:
                raise InvalidEvent(f"too large: over the {self.settings.max_event_bytes}-byte limit")
            silence = decode_silence(raw.value)
        except InvalidEvent as error:
            async with self.database.begin() as conn:
                await repository.append_outbox(
                    conn,
                    [OutboxRow(ids.dlq_id(raw.origin), "dlq", raw.key, raw.value, self.wall_clock(), error.reason)],
                )
            return error.reason
        async with self.database.begin() as conn:
            await routing_store.record_silence(
                conn, silence.event_id, as_utc(silence.occurred_at), raw.value, self.wall_clock()
            )
        return None


async def _store_rows(conn: AsyncConnection, rows: list[OutboxRow]) -> None:
    """Rejected input goes straight to the outbox; messages wait for the routing stage to decide delivery."""
    await repository.append_outbox(conn, [r for r in rows if r.stream == "dlq"])
    await routing_store.queue(conn, [r for r in rows if r.stream != "dlq"])


def _delivery(message: Routed) -> str:
    if isinstance(message, FeedbackDigest):
        return f"digest_sent:{message.audience}"
    audience = message.audience if isinstance(message, FeedbackNotification) else "leadership"
    return f"{message.delivery}:{audience}"


def _log_quarantined(report: BatchReport) -> None:
    for pattern_id, why in report.quarantined:
        log.error("pattern quarantined: its timers stopped", extra={"pattern_id": pattern_id, "reason": why})


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
