"""The relay never stops on one row; the store keeps rejected bytes and event ids only as long as needed;
the PHI hash key is the store's own when none is configured (issue #10)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.relay import Relay
from engine.retention import Pruned, prune
from engine.service import Processor, RawEvent
from engine.settings import Settings
from engine.store import repository
from engine.store import tables as t
from engine.store.repository import OutboxRow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakePublisher:
    """Confirms every record except those whose value is in `refuse` (raising the given error)."""

    def __init__(self, refuse: dict[bytes | None, Exception] | None = None) -> None:
        self.refuse = refuse or {}
        self.sent: list[tuple[bytes | None, dict[str, str]]] = []

    async def publish(self, message: Any, *, key: bytes | None, headers: dict[str, str], no_confirm: bool) -> Any:
        if message in self.refuse:
            raise self.refuse[message]
        self.sent.append((message, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _row(message_id: str, stream: str, value: bytes | None, reason: str | None = None) -> OutboxRow:
    return OutboxRow(message_id, stream, b"k", value, NOW, reason)


async def _outbox(database: AsyncEngine) -> dict[str, Any]:
    async with database.connect() as conn:
        return {r.message_id: r for r in (await conn.execute(select(t.outbox))).all()}


async def test_a_row_the_broker_refuses_for_good_is_parked_and_the_rest_flows(database: AsyncEngine) -> None:
    async with database.begin() as conn:
        await repository.append_outbox(
            conn,
            [
                _row("n-1", "notifications", b"first"),
                _row("n-2", "notifications", b"refused"),
                _row("d-1", "dlq", b"x" * 50, "too large: over the limit"),
                _row("n-3", "notifications", b"third"),
            ],
        )
    notifications = FakePublisher({b"refused": MessageSizeTooLargeError("too big")})
    dlq = FakePublisher({b"x" * 50: MessageSizeTooLargeError("too big with headers")})
    relay = Relay(Settings(), database, {"notifications": notifications, "dlq": dlq}, wall_clock=lambda: NOW)

    assert await relay.relay_once() == 4
    assert await relay.relay_once() == 0

    assert [value for value, _ in notifications.sent] == [b"first", b"third"]
    rows = await _outbox(database)
    assert rows["n-2"].parked == "parked: MessageSizeTooLargeError" and rows["n-2"].published_at is not None
    assert rows["n-1"].parked is None and rows["n-3"].published_at is not None
    # The rejected record could not go whole: a small record names it, the original is kept for a while.
    ((small, headers),) = dlq.sent
    assert b'"original_bytes": 50' in small and headers["docloop-original-bytes"] == "50"
    assert rows["d-1"].value == b"x" * 50 and rows["d-1"].kept_until == NOW + timedelta(hours=168)
    assert not relay.is_stuck()


async def test_a_broker_that_keeps_failing_makes_the_relay_report_itself_stuck(database: AsyncEngine) -> None:
    async with database.begin() as conn:
        await repository.append_outbox(conn, [_row("n-1", "notifications", b"waits")])
    publisher = FakePublisher({b"waits": KafkaTimeoutError()})
    settings = Settings(relay_stuck_seconds=0.05)
    relay = Relay(settings, database, {"notifications": publisher}, wall_clock=lambda: NOW)

    assert await relay.relay_once() == 0
    await asyncio.sleep(0.1)
    assert await relay.relay_once() == 0
    assert relay.is_stuck()
    assert (await _outbox(database))["n-1"].published_at is None  # kept for the next pass, never dropped

    publisher.refuse.clear()
    assert await relay.relay_once() == 1
    assert not relay.is_stuck()


async def test_published_rejected_bytes_are_not_kept_and_old_rows_and_event_ids_are_pruned(
    database: AsyncEngine,
) -> None:
    async with database.begin() as conn:
        await repository.append_outbox(
            conn, [_row("d-1", "dlq", b'{"patient_ref": "MRN-1"}', "invalid event"), _row("n-1", "notifications", b"a")]
        )
        await conn.execute(
            t.processed_events.insert(),
            [
                {"event_id": "old", "event_type": "note.signed", "applied_at": NOW - timedelta(days=31)},
                {"event_id": "recent", "event_type": "note.signed", "applied_at": NOW - timedelta(days=20)},
            ],
        )
    publisher = FakePublisher()
    relay = Relay(Settings(), database, {"notifications": publisher, "dlq": publisher}, wall_clock=lambda: NOW)
    assert await relay.relay_once() == 2
    assert (await _outbox(database))["d-1"].value is None  # the DLQ topic has the bytes; the store does not

    assert await prune(database, Settings(), now=NOW + timedelta(hours=167)) == Pruned(0, 1, 0)
    assert len(await _outbox(database)) == 2
    pruned = await prune(database, Settings(), now=NOW + timedelta(hours=169))
    assert pruned.outbox == 2
    async with database.connect() as conn:
        left = set((await conn.execute(select(t.processed_events.c.event_id))).scalars())
    assert left == {"recent"}


async def test_without_a_configured_key_the_store_makes_one_and_every_processor_uses_it(
    database: AsyncEngine, store_url: str
) -> None:
    settings = Settings(database_url=store_url, phi_hash_key=None)
    first, second = Processor(settings, database), Processor(settings, database)
    await first.load_phi_key()
    await second.load_phi_key()
    assert first.phi_key is not None and first.phi_key == second.phi_key
    assert len(first.phi_key) == 64 and first.phi_key != b"docloop-development-key"
    async with database.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(t.engine_secrets)) == 1
    configured = Processor(Settings(database_url=store_url, phi_hash_key="site-key"), database)
    await configured.load_phi_key()
    assert configured.phi_key == b"site-key"


async def test_a_tombstone_goes_to_the_dlq_as_null(database: AsyncEngine, store_url: str) -> None:
    processor = Processor(Settings(database_url=store_url), database)
    report, rows = await processor.apply_batch([RawEvent(None, b"1234567893", "t/0/7")])
    assert report.rejected["tombstone"] == 1
    assert rows[0].stream == "dlq" and rows[0].value is None and rows[0].key == b"1234567893"
