"""The consumer's batch handling without a broker: what happens when the engine fails on one event."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from engine.database import connect
from engine.domain.rules import Outcome
from engine.serve import Service
from engine.service import RawEvent, TaskBatch
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

    report = await service._apply_until_stored([TaskBatch(0, raws)])

    assert report.rejected["engine_error"] == 1
    async with service.database.connect() as conn:
        applied = set((await conn.execute(select(t.processed_events.c.event_id))).scalars())
        dead = (await conn.execute(select(t.outbox.c.value, t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).all()
    await service.database.dispose()
    assert applied == {"before", "after"}
    assert [(json.loads(v)["event_id"], r) for v, r in dead] == [
        ("boom", "engine error: RuntimeError in service.apply_batches while applying event boom")
    ]


async def test_isolating_engine_faults_costs_one_pass_per_bad_event_not_one_per_event(store_url: str) -> None:
    from engine.service import Processor

    processor = Processor(Settings(database_url=store_url), connect(store_url))
    apply = processor.engine.process
    passes = 0

    def failing_on_boom(event: object, state: object) -> Outcome:
        if str(getattr(event, "event_id", "")).startswith("boom"):
            raise RuntimeError("a defect")
        return apply(event, state)  # type: ignore[arg-type]

    processor.engine.process = failing_on_boom  # type: ignore[method-assign]
    original = processor.apply_batch

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal passes
        passes += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    processor.apply_batch = counted  # type: ignore[method-assign,assignment]
    ids = [f"ok-{i}" for i in range(200)]
    ids[50], ids[150] = "boom-1", "boom-2"
    events = [claim(i, occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=PROVIDER) for i in ids]
    raws = [RawEvent(json.dumps(e).encode(), b"k", f"t/0/{n}") for n, e in enumerate(events)]

    report = await processor.apply(raws)

    await processor.database.dispose()
    assert report.rejected["engine_error"] == 2
    assert sum(v for k, v in report.events.items() if k.endswith(":applied")) == 198
    assert passes == 3  # two passes that found a bad event, one that applied the rest


async def test_a_batch_the_store_refuses_is_split_until_the_one_event_is_alone(sqlite_url: str) -> None:
    from engine.service import Processor
    from engine.store import repository

    await asyncio.to_thread(upgrade, sqlite_url)
    processor = Processor(Settings(database_url=sqlite_url), connect(sqlite_url))
    save = repository.save_changes_of_tasks
    passes = 0

    async def refusing(conn, changes, *args):  # type: ignore[no-untyped-def]
        nonlocal passes
        passes += 1
        if any("unstorable" in c.events for _, c in changes):
            raise ValueError("the store refuses a value")
        await save(conn, changes, *args)

    repository.save_changes_of_tasks = refusing  # type: ignore[assignment]
    try:
        ids = [f"ok-{i}" for i in range(64)]
        ids[37] = "unstorable"
        events = [
            claim(i, occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=PROVIDER) for i in ids
        ]
        raws = [RawEvent(json.dumps(e).encode(), b"k", f"t/0/{n}") for n, e in enumerate(events)]
        report = await processor.apply(raws)
    finally:
        repository.save_changes_of_tasks = save  # type: ignore[assignment]
    async with processor.database.connect() as conn:
        dead = (await conn.execute(select(t.outbox.c.value, t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).all()
    await processor.database.dispose()
    assert [(json.loads(v)["event_id"], r) for v, r in dead] == [
        ("unstorable", "store error: ValueError while storing this event")
    ]
    assert sum(v for k, v in report.events.items() if k.endswith(":applied")) == 63
    assert passes <= 2 * 6 + 4  # halves down to one event, tried 3 times: about 2 log2(64) + 2, not 64


async def test_the_ticker_advances_only_the_tasks_this_replica_owns(sqlite_url: str) -> None:
    service = Service(Settings(database_url=sqlite_url, tick_seconds=0.01))
    service.tasks.assign({1, 4})
    advanced: list[int] = []

    async def advance(task: int = 0) -> tuple[object, list[object]]:
        advanced.append(task)
        if len(advanced) >= 4:
            service.stopping.set()
        return None, []

    async def behind() -> set[int]:
        return set()

    service.processor.advance_idle_clock = advance  # type: ignore[method-assign,assignment]
    service.tasks_behind = behind  # type: ignore[method-assign]
    await asyncio.wait_for(service.run_ticker(), timeout=10)
    await service.database.dispose()
    assert advanced == [1, 4, 1, 4]


async def test_the_ticker_leaves_a_task_with_unapplied_input_to_that_input(sqlite_url: str) -> None:
    """After an outage longer than DOCLOOP_IDLE_ADVANCE_MINUTES a task's backlog waits in the broker: a tick
    before it is applied would fire the reminders its acknowledgements stop. Without the broker's word, no tick."""
    service = Service(Settings(database_url=sqlite_url, tick_seconds=0.01))
    service.tasks.assign({1, 4})
    advanced: list[int] = []
    answers: list[set[int] | None] = [{4}, None, set()]

    async def advance(task: int = 0) -> tuple[object, list[object]]:
        advanced.append(task)
        return None, []

    async def behind() -> set[int]:
        answer = answers.pop(0)
        if not answers:
            service.stopping.set()
        if answer is None:
            raise TimeoutError
        return answer

    service.processor.advance_idle_clock = advance  # type: ignore[method-assign,assignment]
    service.tasks_behind = behind  # type: ignore[method-assign]
    await asyncio.wait_for(service.run_ticker(), timeout=10)
    await service.database.dispose()
    assert advanced == [1, 1, 4]  # task 4 waits for its backlog; the tick the broker did not answer advances none
