"""The department and routing stages' watermark over quiet tasks (SQLite and PostgreSQL): serve's passes,
driven here step by step on a fake clock, must give what `docloop replay --partitions 2` gives.

A quiet task (no input left in the broker) is passed only up to the settled time: the latest clock some task
reached at least DOCLOOP_TASK_IDLE_MS (2 s) before the broker was asked (engine/clocks.py), and its timers due
by then fire first."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.clocks import ClockHistory
from engine.partitioning import task_of_npi
from engine.replay import replay
from engine.service import Processor, RawEvent
from engine.settings import Settings
from engine.store import repository
from engine.store import tables as t
from engine.store.migrate import upgrade
from tests.support.events import claim, npi

WALL = datetime(2026, 1, 21, tzinfo=UTC)
KEY = "k" * 64


def provider_in(task: int) -> str:
    return next(n for i in range(1000) if task_of_npi(n := npi(f"12345{i:04d}"), 2) == task)


A, B = provider_in(0), provider_in(1)


class Serve:
    """A store, the processor and the stage's clock history, on a clock the test moves."""

    def __init__(self, database: AsyncEngine, url: str) -> None:
        self.now = 100.0
        settings = Settings(database_url=url, topic_partitions=2, phi_hash_key=KEY, task_idle_ms=2000)
        self.processor = Processor(settings, database, wall_clock=lambda: WALL)
        self.history = ClockHistory(2.0, clock=lambda: self.now)

    async def apply(self, task: int, events: list[dict[str, Any]]) -> None:
        await self.processor.apply([RawEvent(json.dumps(e).encode(), None, e["event_id"]) for e in events], task, True)

    async def stage(self, behind: set[int] | None = None, held: dict[int, datetime | None] | None = None) -> None:
        """One round of serve's stage loop: the broker asked now, then passes until nothing is left."""
        asked_at = self.now
        while True:
            report = await self.processor.run_department_stage(
                behind=behind or set(), history=self.history, asked_at=asked_at, held=held
            )
            if not (report.facts or report.routed):
                return


async def outcome(database: AsyncEngine) -> dict[str, Any]:
    async with database.connect() as conn:
        rows = (await conn.execute(select(t.outbox.c.value).where(t.outbox.c.stream != "dlq"))).scalars()
        return {_id(m): m for m in map(json.loads, rows)}


async def replayed(events: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    url = f"sqlite+aiosqlite:///{tmp_path / 'replay.db'}"
    await asyncio.to_thread(upgrade, url)
    await replay([source], tmp_path / "out", Settings(database_url=url, phi_hash_key=KEY), partitions=2)
    out = [
        json.loads(line)
        for name in ("notifications", "escalations")
        for line in (tmp_path / "out" / f"{name}.jsonl").open()
    ]
    return {_id(m): m for m in out}


def _id(m: dict[str, Any]) -> str:
    return str(m.get("notification_id") or m.get("escalation_id") or m["digest_id"])


async def test_a_quiet_tasks_timers_fire_before_the_stage_passes_them(
    database: AsyncEngine, store_url: str, tmp_path: Path
) -> None:
    """Task 0 opens a pattern on Jan 10 (a reminder falls due a week later) and goes quiet; task 1 applies Jan 18.
    Once Jan 18 has settled the stage passes task 0: it must fire that reminder first. Before, the stage routed
    up to Jan 18 and the reminder came only with task 0's next event (Jan 20), routed late: other digests."""
    opened = [
        claim(f"a{i}", occurred_at=f"2026-01-10T09:0{i}:00Z", service_date="2026-01-05", provider=A) for i in range(3)
    ]
    later = [claim("b0", occurred_at="2026-01-18T09:00:00Z", service_date="2026-01-15", provider=B)]
    next_one = [
        claim("a9", occurred_at="2026-01-20T09:00:00Z", service_date="2026-01-16", provider=A, procedure_code="99214")
    ]
    serve = Serve(database, store_url)
    await serve.apply(0, opened)
    await serve.stage()
    serve.now += 3
    await serve.apply(1, later)
    await serve.stage()
    serve.now += 3  # Jan 18 settled: the stage passes quiet task 0, firing its reminder first
    await serve.stage()
    async with database.connect() as conn:
        reminders = (await conn.execute(select(t.routing_queue.c.value))).scalars().all()
    serve.now += 3
    await serve.apply(0, next_one)
    await serve.stage()
    await serve.processor.run_department_stage(everything=True)
    mine = await outcome(database)
    assert any(m.get("kind") == "reminder" for m in mine.values()) and reminders == []
    assert mine == await replayed(opened + later + next_one, tmp_path)


async def test_a_quiet_task_is_not_passed_beyond_what_has_settled(
    database: AsyncEngine, store_url: str, tmp_path: Path
) -> None:
    """Task 0 has been quiet; task 1 applies up to 10:30. Task 0's 09:30 denial reaches the broker half a second
    later (within the allowance). Before, the stage counted task 0 idle after 2 s of quiet and routed to 10:30
    without it: the 10:02 billing digest went out without task 0's pattern."""
    early = [
        claim(f"a{i}", occurred_at=f"2026-01-10T08:0{i}:00Z", service_date="2026-01-05", provider=A) for i in range(2)
    ]
    busy = [
        claim(f"b{i}", occurred_at=f"2026-01-10T09:0{i}:00Z", service_date="2026-01-05", provider=B) for i in range(3)
    ]
    busy.append(
        claim("b9", occurred_at="2026-01-10T10:30:00Z", service_date="2026-01-06", provider=B, procedure_code="99214")
    )
    late = [claim("a2", occurred_at="2026-01-10T09:30:00Z", service_date="2026-01-05", provider=A)]
    serve = Serve(database, store_url)
    await serve.apply(0, early)
    await serve.stage()
    serve.now += 3  # task 0 quiet for 3 s
    await serve.apply(1, busy)
    await serve.stage()
    serve.now += 0.5
    await serve.apply(0, late)
    await serve.stage()
    serve.now += 3
    await serve.stage()
    await serve.processor.run_department_stage(everything=True)
    assert await outcome(database) == await replayed(early + busy + late, tmp_path)


async def test_after_a_restart_in_a_quiet_spell_the_stage_goes_on_once_a_clock_has_settled(
    database: AsyncEngine, store_url: str
) -> None:
    """Only task 0 ever had events (a small practice's providers on fewer partitions than tasks), the last two
    hours ago; serve restarts. Task 1 has no clock. The stage waits until task 0's event clock has settled,
    then routes (before, it waited for the next event: clocks of tasks quiet for an hour were not looked at)."""
    serve = Serve(database, store_url)
    claims = [
        claim(f"a{i}", occurred_at=f"2026-01-10T09:0{i}:00Z", service_date="2026-01-05", provider=A) for i in range(4)
    ]
    await serve.apply(0, claims)
    restarted = Serve(database, store_url)
    restarted.processor.wall_clock = lambda: WALL + timedelta(hours=2)
    await restarted.stage()
    assert not await outcome(database)  # nothing settled yet: task 1 might still get a record of any time
    restarted.now += 3
    await restarted.stage()
    assert await outcome(database)  # the pattern opened at 09:02 is routed


async def test_on_sqlite_the_stage_and_a_task_batch_take_turns(
    database: AsyncEngine, store_url: str, monkeypatch: Any
) -> None:
    """The stage fires a quiet task's timers in that task's state. SQLite takes its write lock only at the first
    write: a batch of the same task committed in between would be overwritten (its clock moved back)."""
    opened = [
        claim(f"a{i}", occurred_at=f"2026-01-10T09:0{i}:00Z", service_date="2026-01-05", provider=A) for i in range(3)
    ]
    serve = Serve(database, store_url)
    await serve.apply(0, opened)
    await serve.stage()
    serve.now += 3
    await serve.apply(1, [claim("b0", occurred_at="2026-01-18T09:00:00Z", service_date="2026-01-15", provider=B)])
    await serve.stage()
    serve.now += 3  # Jan 18 settles: the next pass fires task 0's reminder (due Jan 17) in task 0's state
    loaded = asyncio.Event()
    go_on = asyncio.Event()
    load = repository.BatchLoader.load

    async def slow(self: Any, events: Any, until: Any, clock: Any) -> Any:
        state = await load(self, events, until, clock)
        if not events:  # the stage's advance: hold it between its reads and its writes
            loaded.set()
            await go_on.wait()
        return state

    monkeypatch.setattr(repository.BatchLoader, "load", slow)
    stage = asyncio.create_task(serve.stage())
    await asyncio.wait_for(loaded.wait(), timeout=10)
    batch = asyncio.create_task(
        serve.apply(0, [claim("a9", occurred_at="2026-01-20T09:00:00Z", service_date="2026-01-16", provider=A)])
    )
    await asyncio.sleep(0.2)
    assert not batch.done()  # it waits: SQLite for its turn, PostgreSQL for the task's row lock
    go_on.set()
    await asyncio.wait_for(asyncio.gather(stage, batch), timeout=10)
    async with database.connect() as conn:
        clock = await conn.scalar(select(t.tasks.c.clock).where(t.tasks.c.task == 0))
    assert clock is not None and clock.isoformat() == "2026-01-20T09:00:00+00:00"  # the batch's, not moved back


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_task_that_holds_back_all_its_input_bounds_the_stage_at_the_earliest_of_it(
    database: AsyncEngine, store_url: str, tmp_path: Path
) -> None:
    """Task 1 is behind (input in the broker not applied) only because it holds back a 10:00 record for a quiet
    input. Task 0's 09:02 pattern_opened has settled. Task 1 can apply nothing earlier than 10:00 but records
    yet to reach the broker, which are later than the settled time: the stage passes 09:02 (before, it held
    everything at task 1's clock, 08:00, until task 1 had waited out its own allowance: a second one). Not past
    an earlier held record, nor past task 1's first timer due (it fires with task 1's next event)."""
    first = [claim("b0", occurred_at="2026-01-10T08:00:00Z", service_date="2026-01-05", provider=B)]
    opened = [
        claim(f"a{i}", occurred_at=f"2026-01-10T09:0{i}:00Z", service_date="2026-01-05", provider=A) for i in range(3)
    ]
    held = [claim("b1", occurred_at="2026-01-10T10:00:00Z", service_date="2026-01-06", provider=B)]
    serve = Serve(database, store_url)
    await serve.apply(1, first)
    await serve.apply(0, opened)
    await serve.stage(behind={1})
    serve.now += 3  # 09:02 settled

    async def limit(held_at: str | None, behind: set[int] | None = None) -> datetime | None:
        async with database.connect() as conn:
            given = None if held_at is None else {1: at(held_at)}
            mark = await repository.watermark(
                conn, 2, {1} if behind is None else behind, serve.history, serve.now, None, given
            )
        return mark.limit

    settled = at("2026-01-10T09:02:00Z") + timedelta(microseconds=1)
    assert await limit(None) == at("2026-01-10T08:00:00Z")  # not known to hold back everything: its clock
    assert await limit("2026-01-10T10:00:00Z") == settled
    assert await limit("2026-01-10T08:30:00Z") == at("2026-01-10T08:30:00Z")
    async with database.begin() as conn:  # a timer of task 1 due before then (none is, from these claims)
        await conn.execute(
            t.patterns.update().where(t.patterns.c.task == 1).values(next_due_at=at("2026-01-10T08:45:00Z"))
        )
    assert await limit("2026-01-10T10:00:00Z") == at("2026-01-10T08:45:00Z")
    async with database.begin() as conn:
        await conn.execute(t.patterns.update().where(t.patterns.c.task == 1).values(next_due_at=None))

    await serve.stage(behind={1}, held={1: at("2026-01-10T10:00:00Z")})
    assert any(m.get("kind") == "pattern_opened" for m in (await outcome(database)).values())
    serve.now += 3
    await serve.apply(1, held)
    await serve.stage()
    await serve.processor.run_department_stage(everything=True)
    assert await outcome(database) == await replayed(first + opened + held, tmp_path)
