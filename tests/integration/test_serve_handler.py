"""The consumer's batch handling without a broker: what happens when the engine fails on one event."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from engine.domain.rules import Outcome
from engine.serve import Service
from engine.service import RawEvent
from engine.settings import Settings
from engine.store import tables as t
from engine.store.migrate import upgrade
from tests.support.events import claim, npi

PROVIDER = npi("123456789")


async def test_an_event_the_engine_cannot_apply_goes_alone_to_the_dlq(sqlite_url: str) -> None:
    await asyncio.to_thread(upgrade, sqlite_url)
    service = Service(Settings(database_url=sqlite_url))
    apply = service.processor.engine.process

    def failing_on_boom(event: object, state: object) -> Outcome:
        if getattr(event, "event_id", "") == "boom":
            raise RuntimeError("a bug the engine has with this one event")
        return apply(event, state)  # type: ignore[arg-type]

    service.processor.engine.process = failing_on_boom  # type: ignore[method-assign]
    events = [
        claim(i, occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=PROVIDER)
        for i in ("before", "boom", "after")
    ]
    raws = [RawEvent(json.dumps(e).encode(), b"k", f"t/0/{n}") for n, e in enumerate(events)]

    report = await service._apply_until_stored(raws)

    assert report.rejected["engine_error"] == 1
    async with service.database.connect() as conn:
        applied = set((await conn.execute(select(t.processed_events.c.event_id))).scalars())
        dead = (await conn.execute(select(t.outbox.c.value, t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).all()
    await service.database.dispose()
    assert applied == {"before", "after"}
    assert [(json.loads(v)["event_id"], r) for v, r in dead] == [
        ("boom", "engine error: RuntimeError while applying this event")
    ]
