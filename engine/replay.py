"""`docloop replay`: the same engine over files of events, without a broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import connect
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


async def replay(paths: list[Path], out: Path, settings: Settings) -> ReplayResult:
    """Apply the files' events in order, in batches, then write what the outbox gained to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    database = connect(settings.database_url)
    processor = Processor(settings, database)
    report = BatchReport()
    lines = 0
    try:
        async with database.connect() as conn:
            first_new = ((await conn.scalar(select(func.max(t.outbox.c.seq)))) or 0) + 1
        batch: list[RawEvent] = []
        for raw in read_events(paths):
            lines += 1
            batch.append(raw)
            if len(batch) >= settings.batch_max_records:
                report.add(await processor.apply(batch))
                batch = []
        if batch:
            report.add(await processor.apply(batch))
        counts = await _write_outputs(database, out, first_new)
    finally:
        await database.dispose()
    return ReplayResult(lines, report, counts["notifications"], counts["escalations"], counts["dlq"])


async def _write_outputs(database: AsyncEngine, out: Path, first_new: int) -> dict[str, int]:
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
                    line = json.dumps({"reason": row.reason, "raw": row.value.decode("utf-8", "replace")})
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
