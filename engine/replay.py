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
from engine.service import BatchReport, Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t


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
    paths: list[Path], out: Path, settings: Settings, progress: Callable[[int], None] | None = None
) -> ReplayResult:
    """Apply the files' events in order, in batches, then write what the outbox gained to `out`.

    `progress` hears the number of lines read after every batch. Each DLQ entry names the file and line of the
    rejected event (`source`): the outbox keeps only an id derived from it, so the batch's own rows map it back.
    """
    out.mkdir(parents=True, exist_ok=True)
    database = connect(settings.database_url)
    processor = Processor(settings, database)
    report = BatchReport()
    lines = 0
    try:
        async with database.connect() as conn:
            first_new = ((await conn.scalar(select(func.max(t.outbox.c.seq)))) or 0) + 1
        sources: dict[str, str] = {}

        async def apply(batch: list[RawEvent]) -> None:
            batch_report, rows = await processor.apply_batch(batch)
            report.add(batch_report)
            rejected = {row.message_id for row in rows if row.stream == "dlq"}
            if rejected:
                sources.update({i: raw.origin for raw in batch if (i := ids.dlq_id(raw.origin)) in rejected})
            if progress is not None:
                progress(lines)

        batch: list[RawEvent] = []
        for raw in read_events(paths):
            lines += 1
            batch.append(raw)
            if len(batch) >= settings.batch_max_records:
                await apply(batch)
                batch = []
        if batch:
            await apply(batch)
        counts = await _write_outputs(database, out, first_new, sources)
    finally:
        await database.dispose()
    return ReplayResult(lines, report, counts["notifications"], counts["escalations"], counts["dlq"])


async def _write_outputs(database: AsyncEngine, out: Path, first_new: int, sources: dict[str, str]) -> dict[str, int]:
    files = {
        name: (out / f"{name}.jsonl").open("w", encoding="utf-8") for name in ("notifications", "escalations", "dlq")
    }
    counts = dict.fromkeys(files, 0)
    try:
        async with database.begin() as conn:
            query = select(t.outbox).where(t.outbox.c.seq >= first_new).order_by(t.outbox.c.seq)
            last_seq = first_new - 1
            for row in await conn.execute(query):
                if row.stream == "dlq":
                    entry = {"source": sources.get(row.message_id), "reason": row.reason}
                    line = json.dumps({**entry, "raw": row.value.decode("utf-8", "replace")})
                else:
                    line = row.value.decode("utf-8")
                files[row.stream].write(line + "\n")
                counts[row.stream] += 1
                last_seq = row.seq
                published_at = row.created_at
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
