"""The outbox relay: publishes outbox rows in order and marks them once the broker confirmed them.

No single row may stop it. A row's publication ends in one of three ways:
- confirmed: marked published (rejected bytes are then dropped from the store: the DLQ topic has them);
- refused for what the record is (too large, corrupt, invalid topic): retrying cannot help, so the row is
  *parked* (marked, with the error class, counted) and the rows after it flow. A rejected record too large to
  republish whole is first replaced by a small record naming it (reason, size, sha256, where the original is
  kept), and the original stays in the store until `kept_until` for operators;
- failed for a reason that may pass (broker unreachable, timeouts): left unpublished and tried again on the next
  pass. When rows stay unpublished longer than DOCLOOP_RELAY_STUCK_SECONDS the relay reports itself stuck
  (`/readyz` and the `docloop_relay_stuck` gauge).
A crash between publishing and marking republishes the same rows with the same `docloop-message-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.faults import crash_point
from engine.metrics import Metrics
from engine.settings import Settings
from engine.store import tables as t
from engine.store.repository import among

log = logging.getLogger("docloop.relay")

RELAY_LOCK = 0x646F636C6F6F70  # any constant: one relay at a time across replicas (PostgreSQL advisory lock)

# Errors about the record itself: publishing the same bytes again can never succeed.
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, CorruptRecordException, InvalidTopicError)
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class Publisher(Protocol):
    async def publish(self, message: Any, *, key: bytes | None, headers: dict[str, str], no_confirm: bool) -> Any: ...


Clock = Callable[[], datetime]


class Relay:
    def __init__(
        self,
        settings: Settings,
        database: AsyncEngine,
        publishers: dict[str, Publisher],
        metrics: Metrics | None = None,
        wall_clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.database = database
        self.publishers = publishers
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.blocked_since: float | None = None  # monotonic time since when rows have been waiting in vain

    # ---- health -------------------------------------------------------------------------------------

    def stuck_for(self) -> float:
        """Seconds that unpublished rows have waited in vain (0 while the relay keeps up)."""
        return 0.0 if self.blocked_since is None else time.monotonic() - self.blocked_since

    def is_stuck(self) -> bool:
        return self.stuck_for() > self.settings.relay_stuck_seconds

    def _progress(self, blocked: bool) -> None:
        if not blocked:
            self.blocked_since = None
        elif self.blocked_since is None:
            self.blocked_since = time.monotonic()
        if self.metrics is not None:
            self.metrics.relay_stuck.set(1 if self.is_stuck() else 0)

    # ---- one pass -----------------------------------------------------------------------------------

    async def relay_once(self) -> int:
        """Publish the oldest unpublished rows; returns how many were marked (published or parked)."""
        async with self.database.begin() as conn:
            lock = text("SELECT pg_try_advisory_xact_lock(:key)")
            if conn.dialect.name == "postgresql" and not await conn.scalar(lock, {"key": RELAY_LOCK}):
                return 0  # another replica is relaying
            rows = (
                await conn.execute(
                    select(t.outbox)
                    .where(t.outbox.c.published_at.is_(None))
                    .order_by(t.outbox.c.seq)
                    .limit(self.settings.relay_batch_size)
                )
            ).all()
            if not rows:
                self._progress(blocked=False)
                return 0
            outcomes = await self._publish_all(list(rows))
            crash_point("relay_before_mark")
            now = self.wall_clock()
            kept_until = now + timedelta(hours=self.settings.dlq_original_retention_hours)
            published = [row.seq for row, outcome in zip(rows, outcomes, strict=True) if outcome == "published"]
            dlq_published = [
                row.seq
                for row, outcome in zip(rows, outcomes, strict=True)
                if outcome == "published" and row.stream == "dlq"
            ]
            if published:
                await conn.execute(
                    update(t.outbox).where(among(conn, t.outbox.c.seq, published)).values(published_at=now)
                )
            if dlq_published:  # the topic has the bytes now: the store keeps no copy of rejected input
                await conn.execute(
                    update(t.outbox).where(among(conn, t.outbox.c.seq, dlq_published)).values(value=None)
                )
            marked = len(published)
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome in ("published", "retry"):
                    continue
                if outcome == "replaced":  # the small record is out; the original stays for operators
                    values: dict[str, Any] = {"published_at": now, "kept_until": kept_until}
                else:
                    values = {"published_at": now, "parked": outcome[:200], "kept_until": kept_until}
                await conn.execute(update(t.outbox).where(t.outbox.c.seq == row.seq).values(**values))
                marked += 1
        self._progress(blocked=any(outcome == "retry" for outcome in outcomes))
        return marked

    async def _publish_all(self, rows: list[Row[Any]]) -> list[str]:
        """Each row's outcome: 'published', 'replaced', 'retry', or the reason it is parked.

        Rows are handed to the producer one after the other (so the broker gets them in outbox order) and
        their confirmations awaited together."""
        pending: list[Awaitable[Any] | BaseException] = []
        for row in rows:
            try:
                pending.append(await self._enqueue(row.stream, row.value, row.key, self._headers(row)))
            except Exception as error:
                pending.append(error)
        confirmed = await asyncio.gather(*(_confirmation(item) for item in pending), return_exceptions=True)
        outcomes = []
        for row, result in zip(rows, confirmed, strict=True):
            if not isinstance(result, BaseException):
                outcomes.append("published")
            elif isinstance(result, TOO_LARGE) and row.stream == "dlq" and row.value is not None:
                try:
                    outcomes.append(await self._replace(row))
                except Exception as again:
                    outcomes.append(self._failed(row, again))
            else:
                outcomes.append(self._failed(row, result))
        return outcomes

    async def _enqueue(
        self, stream: str, value: bytes | None, key: bytes | None, headers: dict[str, str]
    ) -> Awaitable[Any]:
        confirmation: Awaitable[Any] = await self.publishers[stream].publish(
            value, key=key, headers=headers, no_confirm=True
        )
        return confirmation

    async def _send(self, stream: str, value: bytes | None, key: bytes | None, headers: dict[str, str]) -> None:
        await (await self._enqueue(stream, value, key, headers))

    def _headers(self, row: Row[Any]) -> dict[str, str]:
        if row.stream == "dlq":
            headers = {"docloop-message-id": row.message_id, "docloop-reason": row.reason or ""}
            if row.value is None:
                headers["docloop-tombstone"] = "true"
            return headers
        return {"docloop-message-id": row.message_id, "content-type": "application/json"}

    async def _replace(self, row: Row[Any]) -> str:
        kept_until = self.wall_clock() + timedelta(hours=self.settings.dlq_original_retention_hours)
        digest = hashlib.sha256(row.value).hexdigest()
        small = {
            "docloop_replaced": True,
            "reason": row.reason,
            "original_bytes": len(row.value),
            "original_sha256": digest,
            "original_kept": {
                "where": "the Docloop store, table outbox",
                "message_id": row.message_id,
                "until": kept_until.isoformat().replace("+00:00", "Z"),
            },
        }
        headers = {
            **self._headers(row),
            "docloop-replaced": "too large to republish whole",
            "docloop-original-bytes": str(len(row.value)),
            "docloop-original-sha256": digest,
            "content-type": "application/json",
        }
        await self._send("dlq", json.dumps(small).encode(), row.key, headers)
        if self.metrics is not None:
            self.metrics.dlq_replaced.inc()
        log.warning(
            "relay: rejected record too large to republish; published a small record naming it",
            extra={"message_id": row.message_id, "bytes": len(row.value)},
        )
        return "replaced"

    def _failed(self, row: Row[Any], error: BaseException) -> str:
        name = type(error).__name__
        if isinstance(error, UNPUBLISHABLE):
            if self.metrics is not None:
                self.metrics.outbox_parked.labels(stream=row.stream, error=name).inc()
            log.error(
                "relay: row parked, the broker refuses it for good",
                extra={"message_id": row.message_id, "stream": row.stream, "error": name},
            )
            return f"parked: {name}"
        if self.metrics is not None:
            self.metrics.relay_failures.labels(error=name).inc()
        log.warning("relay: publish failed; will retry", extra={"message_id": row.message_id, "error": name})
        return "retry"

    # ---- the loop -----------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event, wake: asyncio.Event) -> None:
        idle = self.settings.relay_idle_ms / 1000
        wait = idle
        while not stopping.is_set():
            # Cleared before the pass, not after it: rows a stage commits during a pass that did not see them
            # wake the next pass at once instead of waiting out the poll interval.
            wake.clear()
            try:
                marked = await self.relay_once()
                wait = idle if marked else min(max(wait * 2, idle), 5.0) if self.blocked_since else idle
            except Exception as error:  # a relay that died would silently stop all output
                # Back off, but a stage pass that routed messages meanwhile (the store is back) wakes the relay
                # at once.
                wait = min(max(wait * 2, 0.5), 5.0)
                self._progress(blocked=True)
                if self.metrics is not None:
                    self.metrics.relay_failures.labels(error=type(error).__name__).inc()
                log.warning("relay: pass failed", extra={"retry_in_s": wait, "error": type(error).__name__})
                marked = 0
            if marked == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=wait)


async def _confirmation(item: Awaitable[Any] | BaseException) -> Any:
    if isinstance(item, BaseException):
        raise item
    return await item
