"""`docloop replay`: the same engine over files of events, without a broker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import connect
from engine.domain import ids
from engine.errors import CliError
from engine.partitioning import input_of, provider_of, task_of_npi
from engine.service import BatchReport, Processor, RawEvent
from engine.settings import Settings
from engine.store import repository
from engine.store import tables as t
from engine.tasks import TaskInputs, merged, with_time
from schemas import FeedbackAcknowledged, FeedbackReviewed, InvalidEvent, decode_event


@dataclass(frozen=True)
class ReplayResult:
    lines: int
    report: BatchReport
    notifications: int
    escalations: int
    dlq: int


def read_events(paths: list[Path]) -> Iterator[RawEvent]:
    for path in paths:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                value = line.rstrip(b"\r\n")
                if value.strip():
                    yield RawEvent(value=value, key=None, origin=f"{path.name}:{number}")


async def replay(
    paths: list[Path],
    out: Path,
    settings: Settings,
    partitions: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Apply the files' events as `serve` would on `partitions` partitions (default DOCLOOP_TOPIC_PARTITIONS):
    each event goes to the task of its provider (Kafka's default partitioner on the NPI), each task applies
    its inputs merged in event-time order with its own clock, and the department and routing stages run once
    every task is done. Then write what the outbox gained to `out`. `progress` hears the number of events
    applied so far after every batch."""
    out.mkdir(parents=True, exist_ok=True)
    count = partitions or settings.topic_partitions
    settings = settings.model_copy(update={"topic_partitions": count})
    database = connect(settings.database_url)
    processor = Processor(settings, database)
    topics = inbound_topic_names(settings)
    report = BatchReport()
    lines = 0
    try:
        async with database.begin() as conn:
            first_new = ((await conn.scalar(select(func.max(t.outbox.c.seq)))) or 0) + 1
            stored = await repository.claim_partitions(conn, count)
        if stored != count:
            raise CliError(
                f"the store's tasks were computed for {stored} partitions, not {count}: use --partitions {stored}"
            )
        await processor.load_phi_key(warn=database.dialect.name != "sqlite")  # a file made for this replay
        inputs: dict[int, TaskInputs] = {}
        origins: dict[str, str] = {}  # DLQ message id -> "file:line", for dlq.jsonl
        wall = processor.wall_clock()
        for raw in read_events(paths):
            lines += 1
            origins[ids.dlq_id(raw.origin)] = raw.origin
            if raw.value is not None and b'"feedback.silence"' in raw.value:
                # For the routing stage, at its event time (an invalid one goes to the DLQ with its reason).
                await processor.record_silence(raw)
                continue
            decoded = processor.decoded(raw, wall)
            task, topic = 0, topics["claims"]  # invalid: no key to go by; it only reaches the DLQ, from any task
            if not isinstance(decoded, InvalidEvent):
                npi = provider_of(decoded)
                topic = topics[input_of(decoded)]
                task = task_of_npi(npi, count) if npi is not None else UNRESOLVED
            inputs.setdefault(task, TaskInputs(list(dict.fromkeys(topics.values())))).add(
                topic, with_time(raw, decoded, keep=False)
            )
        pending: dict[int, list[RawEvent]] = {}
        applied = 0

        async def flush(task: int) -> None:
            nonlocal applied
            if pending.get(task):
                batch = pending.pop(task)
                report.add(await processor.apply(batch, task))
                applied += len(batch)
                if progress is not None:
                    progress(applied)

        for task, raw in merged(inputs):
            if task == UNRESOLVED:
                # An acknowledgement or review naming only a notification: its task is that notification's provider's,
                # known once everything before it is applied.
                for waiting in sorted(pending):
                    await flush(waiting)
                task = await _task_of_notification(database, raw, count)
            pending.setdefault(task, []).append(raw)
            if len(pending[task]) >= settings.batch_max_records:
                await flush(task)
        for task in sorted(pending):
            await flush(task)
        # Every task's timers up to the furthest clock, as serve's department stage fires a quiet task's before
        # it passes them (a task's clock does not stay behind what every task has settled).
        report.add(await processor.advance_tasks_to_furthest())
        while True:  # the department and routing stages, then the digests still pending
            stage = await processor.run_department_stage(everything=True)
            report.add(stage)
            if not (stage.facts or stage.routed):
                break
        counts = await _write_outputs(database, out, first_new, origins)
    finally:
        await database.dispose()
    return ReplayResult(lines, report, counts["notifications"], counts["escalations"], counts["dlq"])


UNRESOLVED = -1


def inbound_topic_names(settings: Settings) -> dict[str, str]:
    return {
        "claims": settings.topic_claims_denied,
        "notes": settings.topic_notes_signed,
        "acks": settings.topic_acks,
        "reviews": settings.topic_reviews,
    }


async def _task_of_notification(database: AsyncEngine, raw: RawEvent, partitions: int) -> int:
    event = decode_event(raw.value or b"")
    assert isinstance(event, FeedbackAcknowledged | FeedbackReviewed) and event.notification_id is not None
    async with database.connect() as conn:
        npi = await conn.scalar(
            select(t.patterns.c.provider_npi)
            .join(t.notifications, t.notifications.c.pattern_id == t.patterns.c.pattern_id)
            .where(t.notifications.c.notification_id == event.notification_id)
        )
    return task_of_npi(npi, partitions) if npi else 0


async def _write_outputs(database: AsyncEngine, out: Path, first_new: int, origins: dict[str, str]) -> dict[str, int]:
    files = {
        name: (out / f"{name}.jsonl").open("w", encoding="utf-8") for name in ("notifications", "escalations", "dlq")
    }
    counts = dict.fromkeys(files, 0)
    try:
        async with database.begin() as conn:
            query = select(t.outbox).where(t.outbox.c.seq >= first_new).order_by(t.outbox.c.seq)
            last_seq = first_new - 1
            published_at = None
            # Messages in event-time order (tasks and the department stage write the outbox in their own
            # turns); rejected input in the order it was read.
            rows = list(await conn.execute(query))
            messages = sorted((r for r in rows if r.stream != "dlq"), key=lambda r: (r.created_at, r.seq))
            for row in [*messages, *(r for r in rows if r.stream == "dlq")]:
                if row.stream == "dlq":
                    raw = None if row.value is None else row.value.decode("utf-8", "replace")
                    source = origins.get(row.message_id)
                    line = json.dumps({"reason": row.reason, "source": source, "raw": raw})
                else:
                    line = row.value.decode("utf-8")
                files[row.stream].write(line + "\n")
                counts[row.stream] += 1
                last_seq = max(last_seq, row.seq)
                published_at = row.created_at if published_at is None else max(published_at, row.created_at)
            if last_seq >= first_new:
                # Written to files is delivered: a later `serve` on this store must not publish them again.
                await conn.execute(
                    update(t.outbox)
                    .where(t.outbox.c.seq.between(first_new, last_seq), t.outbox.c.published_at.is_(None))
                    .values(published_at=published_at)
                )
    finally:
        for handle in files.values():
            handle.close()
    return counts
