"""Small batches of several tasks applied in one transaction (serve at a low rate: a record or two per task at a
time) must leave the store exactly as one transaction per task does: each task on its own clock and state.
On SQLite and PostgreSQL, over a simulated month, with a misrouted acknowledgement and an event id published
under two keys among them; and one event the engine raises on costs only itself."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import connect
from engine.partitioning import provider_of, task_of_npi
from engine.service import Processor, RawEvent, TaskBatch
from engine.settings import Settings
from engine.simulate import SimulationConfig, simulate
from engine.store import tables as t
from schemas import decode_event
from tests.support.events import ack, claim, note, npi

WALL = datetime(2026, 6, 1, tzinfo=UTC)
KEY = "k" * 64
TASKS = 4
# Rows that differ only by a sequence number given in commit order are compared without it.
SEQUENCED = {"department_facts", "outbox", "routing_queue", "routing_events"}


def provider_in(task: int) -> str:
    return next(n for i in range(1000) if task_of_npi(n := npi(f"55555{i:04d}"), TASKS) == task)


def rounds() -> list[dict[int, list[RawEvent]]]:
    """The simulated events by task, handed out in rounds of 0 to 3 records per task (seeded)."""
    events = simulate(SimulationConfig(providers=12, days=20, visits_per_day=6)).events
    by_task: dict[int, list[dict[str, Any]]] = {task: [] for task in range(TASKS)}
    for event in sorted(events, key=lambda e: e["occurred_at"]):
        by_task[task_of_npi(provider_of(decode_event(json.dumps(event).encode())) or "", TASKS)].append(event)
    chance = random.Random(7)
    queues = {task: raws(events) for task, events in by_task.items()}
    out: list[dict[int, list[RawEvent]]] = []
    while any(queues.values()):
        handed = {}
        for task, queue in queues.items():
            if taken := queue[: chance.randint(0, 3)]:
                handed[task] = taken
                del queue[: len(taken)]
        out.append(handed)
    # Then, in one transaction: an acknowledgement keyed by another task's provider (a publisher's mistake: it
    # loads that task's pattern) and one event id under two keys (the first task in task order applies it, the
    # other skips it as applied).
    a = provider_in(0)
    out.append(
        {
            0: raws(
                claim(f"m{i}", occurred_at=f"2026-02-0{i + 1}T09:00:00Z", service_date="2026-01-28", provider=a)
                for i in range(3)
            )
        }
    )
    twice = claim("twice", occurred_at="2026-02-11T09:00:00Z", service_date="2026-02-01", provider=provider_in(2))
    out.append(
        {
            1: raws([ack("misrouted", occurred_at="2026-02-10T09:00:00Z", provider=a)]),
            2: raws([twice]),
            3: raws([twice]),
        }
    )
    return out


def raws(events: Any) -> list[RawEvent]:
    return [RawEvent(json.dumps(e).encode(), None, e["event_id"]) for e in events]


async def snapshot(database: AsyncEngine) -> dict[str, list[str]]:
    found = {}
    async with database.connect() as conn:
        for table in t.metadata.sorted_tables:
            if table.name in ("engine_secrets", "alembic_version"):
                continue
            rows = (await conn.execute(select(table))).mappings().all()
            found[table.name] = sorted(
                repr({k: v for k, v in row.items() if not (table.name in SEQUENCED and k == "seq")}) for row in rows
            )
    return found


async def applied(
    url: str, together: bool, given: list[dict[int, list[RawEvent]]] | None = None
) -> dict[str, list[str]]:
    database = connect(url)
    settings = Settings(database_url=url, topic_partitions=TASKS, phi_hash_key=KEY)
    processor = Processor(settings, database, wall_clock=lambda: WALL)
    for handed in rounds() if given is None else given:
        batches = [TaskBatch(task, raws, True) for task, raws in sorted(handed.items())]
        if together:
            await processor.apply_together(batches)
        else:
            for batch in batches:
                await processor.apply(batch.raws, batch.task, batch.idle)
    await processor.run_department_stage(everything=True)
    found = await snapshot(database)
    await database.dispose()
    return found


async def wiped(url: str) -> str:
    database = connect(url)
    async with database.begin() as conn:
        for table in reversed(t.metadata.sorted_tables):
            if table.name != "engine_secrets":
                await conn.execute(table.delete())
    await database.dispose()
    return url


async def test_tasks_sharing_a_transaction_leave_what_a_transaction_each_leaves(store_url: str) -> None:
    alone = await applied(store_url, together=False)
    together = await applied(await wiped(store_url), together=True)
    assert alone["patterns"] and alone["notes"] and alone["outbox"]
    assert together == alone


async def both_ways(url: str, given: list[dict[int, list[dict[str, Any]]]]) -> tuple[Any, Any]:
    handed = [{task: raws(events) for task, events in round.items()} for round in given]
    alone = await applied(url, together=False, given=handed)
    return alone, await applied(await wiped(url), together=True, given=handed)


def opening(provider: str, count: int = 3) -> list[dict[str, Any]]:
    return [
        claim(f"c{i}", occurred_at=f"2026-02-0{i + 1}T09:00:00Z", service_date="2026-01-28", provider=provider)
        for i in range(count)
    ]


# Two tasks of one round that meet on one provider, case, encounter or notification (found in review): each
# loads the store as it was before the transaction, so the later one would not see what the earlier one wrote.


async def test_a_visit_two_clinicians_sign_is_a_case_of_each_whatever_the_order(store_url: str) -> None:
    """A resident and an attending (two tasks, each keyed by its own author) sign notes of one encounter that
    show the same undercoded level: a case of each author. Serve applies two tasks in either order (each in
    its own transaction, concurrently on PostgreSQL), and the store must not depend on which went first: with
    one case per visit, the author whose task got there first owned it."""
    at = {"signed_at": "2026-02-03T10:00:00Z", "service_date": "2026-02-03", "encounter_id": "ENC-shared"}
    undercoded: dict[str, Any] = {"procedure_codes": ["99213"], "mdm_level": "high"}
    resident = note("resident", provider=provider_in(0), **at, **undercoded)
    attending = note("attending", provider=provider_in(1), **at, **undercoded)
    alone, together = await both_ways(store_url, [{0: [resident], 1: [attending]}])
    assert together == alone
    assert len(alone["cases"]) == 2
    handed = [{1: raws([attending])}, {0: raws([resident])}]
    assert await applied(await wiped(store_url), together=False, given=handed) == alone


async def test_a_claim_resubmitted_under_another_provider_is_a_case_of_each_whatever_the_order(
    store_url: str,
) -> None:
    """A claim line denied under one rendering provider, corrected to another and denied again: keyed by each
    provider's NPI, the two denials are two tasks. With one case per line the task that got there first owned
    it (and the other task's denial changed that provider's case and pattern); with a case per line and
    rendering provider the store does not depend on the order."""
    line: dict[str, Any] = {"claim_id": "CLM-corrected", "encounter_id": "ENC-corrected", "service_date": "2026-01-28"}
    first = claim("first", occurred_at="2026-02-03T09:00:00Z", provider=provider_in(0), **line)
    corrected = claim("corrected", occurred_at="2026-02-03T09:00:00Z", provider=provider_in(1), **line)
    alone, together = await both_ways(store_url, [{0: [first], 1: [corrected]}])
    assert together == alone
    assert len(alone["cases"]) == 2
    handed = [{1: raws([corrected])}, {0: raws([first])}]
    assert await applied(await wiped(store_url), together=False, given=handed) == alone


async def test_a_misrouted_acknowledgement_next_to_a_claim_of_its_pattern(store_url: str) -> None:
    a = provider_in(0)
    later = claim("c3", occurred_at="2026-02-05T09:00:00Z", service_date="2026-01-29", provider=a)
    misrouted = ack("misrouted", occurred_at="2026-02-05T10:00:00Z", provider=a)
    alone, together = await both_ways(store_url, [{0: opening(a)}, {0: [later], 1: [misrouted]}])
    assert together == alone


async def test_a_misrouted_note_sees_the_pattern_a_claim_of_the_same_round_opened(store_url: str) -> None:
    a = provider_in(0)
    gap = note("n", provider=a, signed_at="2026-02-03T10:00:00Z", service_date="2026-02-01", mdm_level="low")
    alone, together = await both_ways(store_url, [{0: opening(a, 2)}, {0: opening(a)[2:], 1: [gap]}])
    assert any("pre_bill_alert" in row for row in alone["outbox"])
    assert together == alone


async def test_a_providers_name_on_a_tie_follows_task_order(store_url: str) -> None:
    a = provider_in(0)
    first = claim("c", occurred_at="2026-02-03T09:00:00Z", service_date="2026-02-01", provider=a)
    first["rendering_provider"]["name"] = "Dr. Old Name"
    second = note("n", provider=a, signed_at="2026-02-03T09:00:00Z", service_date="2026-02-01")
    second["author"]["name"] = "Dr. New Name"
    alone, together = await both_ways(store_url, [{0: [first], 1: [second]}])
    assert any("Dr. New Name" in row for row in alone["providers"])
    assert together == alone


async def test_an_event_that_fails_a_shared_transaction_costs_only_itself(
    database: AsyncEngine, store_url: str
) -> None:
    settings = Settings(database_url=store_url, topic_partitions=TASKS, phi_hash_key=KEY)
    processor = Processor(settings, database, wall_clock=lambda: WALL)
    process = processor.engine.process

    def failing_on_boom(event: Any, state: Any) -> Any:
        if event.event_id == "boom":
            raise RuntimeError("a defect")
        return process(event, state)

    processor.engine.process = failing_on_boom  # type: ignore[method-assign]
    at: dict[str, Any] = {"occurred_at": "2026-02-02T09:00:00Z", "service_date": "2026-01-05"}
    batches = [
        TaskBatch(0, raws([claim("a", **at, provider=provider_in(0)), claim("boom", **at, provider=provider_in(0))])),
        TaskBatch(1, raws([claim("b", **at, provider=provider_in(1))])),
    ]
    report = await processor.apply_together(batches)
    assert report.rejected == {"engine_error": 1}
    assert report.events == {"claim.denied:applied": 2}
    async with database.connect() as conn:
        dead = (await conn.execute(select(t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).scalars().all()
        clocks = {row.task: row.clock for row in await conn.execute(select(t.tasks))}
    assert dead == ["engine error: RuntimeError in service.apply_batches while applying event boom"]
    assert set(clocks) == {0, 1}  # both tasks applied, each on its own
