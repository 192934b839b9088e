"""What the store keeps, and for how long: published outbox rows, remembered event ids, rejected originals.

Pruning runs in serve every DOCLOOP_PRUNE_INTERVAL_MINUTES, on one replica at a time (PostgreSQL advisory
lock), in chunks so no statement holds locks for long. All cut-offs are wall time: they are about how long a
redelivery or an operator may need a row, not about the events' own times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.settings import Settings
from engine.store import tables as t

log = logging.getLogger("docloop.retention")

PRUNE_LOCK = 0x646F636C6F7072
CHUNK = 10_000


@dataclass(frozen=True)
class Pruned:
    outbox: int = 0
    events: int = 0
    originals: int = 0


async def prune(database: AsyncEngine, settings: Settings, now: datetime | None = None) -> Pruned:
    now = now or datetime.now(UTC)
    published_before = now - timedelta(hours=settings.outbox_retention_hours)
    events_before = now - timedelta(days=settings.dedup_window_days)
    async with database.begin() as conn:
        lock = text("SELECT pg_try_advisory_xact_lock(:k)")
        if conn.dialect.name == "postgresql" and not await conn.scalar(lock, {"k": PRUNE_LOCK}):
            return Pruned()  # another replica is pruning
        # Originals kept for operators (too large to republish whole, or parked) past their time: drop the bytes.
        originals = (
            await conn.execute(
                update(t.outbox).where(t.outbox.c.kept_until < now, t.outbox.c.value.is_not(None)).values(value=None)
            )
        ).rowcount
    outbox = await _delete_in_chunks(
        database,
        t.outbox.c.seq,
        (t.outbox.c.published_at < published_before)
        & (t.outbox.c.kept_until.is_(None) | (t.outbox.c.kept_until < now)),
    )
    events = await _delete_in_chunks(
        database, t.processed_events.c.event_id, t.processed_events.c.applied_at < events_before
    )
    pruned = Pruned(outbox, events, originals or 0)
    if outbox or events or originals:
        log.info("pruned", extra={"outbox_rows": outbox, "event_ids": events, "originals_dropped": originals})
    return pruned


async def _delete_in_chunks(database: AsyncEngine, key: Any, condition: Any) -> int:
    """Delete the rows matching `condition` in chunks of CHUNK, each its own short transaction."""
    total = 0
    while True:
        async with database.begin() as conn:
            chosen = select(key).where(condition).limit(CHUNK).scalar_subquery()
            deleted = (await conn.execute(delete(key.table).where(key.in_(chosen)))).rowcount
        total += deleted or 0
        if not deleted or deleted < CHUNK:
            return total
