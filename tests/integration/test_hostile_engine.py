"""Hostile input through the engine on both stores (issue #10): mixed into one batch with valid events, every
hostile value becomes a DLQ row whose reason names the field, the valid events still produce their messages,
and the verdicts are the decoder's own, so the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.service import Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t
from schemas import InvalidEvent, decode_event
from tests.support.hostile import PROVIDER, SECRET, corpus, tried, valid_events

WALL = datetime(2026, 6, 1, tzinfo=UTC)


def expected_reason(raw: bytes) -> str:
    try:
        decode_event(raw)
    except InvalidEvent as rejected:
        return rejected.reason
    raise AssertionError("a corpus case decoded")


async def test_hostile_input_costs_only_itself_and_gets_the_same_verdict_on_every_store(
    store_url: str, database: AsyncEngine
) -> None:
    cases = corpus()
    valid = valid_events()
    # Valid events spread through the batch, the hostile ones between them.
    raws: list[bytes] = []
    step = len(cases) // len(valid) + 1
    for index, value in enumerate(valid):
        raws += [case.raw for case in cases[index * step : (index + 1) * step]] + [value]
    raws += [case.raw for case in cases[len(valid) * step :]]
    assert len(raws) == len(cases) + len(valid)
    processor = Processor(Settings(database_url=store_url), database, wall_clock=lambda: WALL)
    tried("engine", len(cases))

    report, rows = await processor.apply_batch(
        [RawEvent(value, PROVIDER.encode(), f"hostile/0/{offset}") for offset, value in enumerate(raws)]
    )

    dead = {row.value: row.reason for row in rows if row.stream == "dlq"}
    assert len(dead) == len(cases), "every hostile value is dead-lettered once, and nothing else is"
    for case in cases:
        reason = dead[case.raw]
        assert reason == expected_reason(case.raw), case.name  # the decoder's verdict, whatever the store
        assert case.where in reason, (case.name, reason)
        assert reason is not None and SECRET not in reason
        if case.value is not None:
            assert case.value not in reason
    assert sum(report.rejected.values()) == len(cases)
    assert sum(report.events.values()) == len(valid)

    messages = [json.loads(row.value) for row in rows if row.stream == "notifications"]
    opened = [m for m in messages if m["kind"] == "pattern_opened"]
    assert {m["audience"] for m in opened} == {"clinician", "billing"}
    assert all(m["pattern"]["provider_npi"] == PROVIDER for m in opened)

    async with database.connect() as conn:
        applied = set((await conn.execute(select(t.processed_events.c.event_id))).scalars())
        stored_dead = (await conn.execute(select(t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).scalars()
        stored_reasons = sorted(reason or "" for reason in stored_dead)
    assert applied == {"ok-1", "ok-2", "ok-3", "ok-edge-claim", "ok-edge-note"}
    assert stored_reasons == sorted(reason or "" for reason in dead.values())
