"""The service layer over a real store (SQLite and PostgreSQL): batches, duplicates, outbox and PHI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.service import Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t
from tests.support.scenario import scenario_lines

WALL = datetime(2026, 11, 27, 12, tzinfo=UTC)


def processor(database: AsyncEngine, url: str) -> Processor:
    return Processor(Settings(database_url=url), database, wall_clock=lambda: WALL)


def raws(lines: list[str]) -> list[RawEvent]:
    return [RawEvent(line.encode(), None, f"scenario:{i}") for i, line in enumerate(lines, start=1)]


async def apply_in_batches(p: Processor, lines: list[str], size: int) -> None:
    events = raws(lines)
    for start in range(0, len(events), size):
        await p.apply_batch(events[start : start + size])


async def outbox(database: AsyncEngine) -> list[tuple[str, str, bytes]]:
    async with database.connect() as conn:
        rows = await conn.execute(
            select(t.outbox.c.stream, t.outbox.c.message_id, t.outbox.c.value).order_by(t.outbox.c.seq)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def queued(database: AsyncEngine) -> list[bytes]:
    """The per-fact messages as the tasks made them, waiting for the routing stage."""
    async with database.connect() as conn:
        return list((await conn.execute(select(t.routing_queue.c.value).order_by(t.routing_queue.c.seq))).scalars())


@pytest.mark.parametrize("batch_size", [1, 7, 500])
async def test_batch_boundaries_do_not_change_the_outcome(
    database: AsyncEngine, store_url: str, batch_size: int
) -> None:
    """serve cuts batches wherever the broker does; replay in 500s. Both must give the same messages."""
    from engine.domain.rules import Engine
    from engine.domain.state import State
    from schemas import InvalidEvent, decode_event

    expected: list[str] = []
    engine, state = Engine(), State()
    for line in scenario_lines():
        try:
            event = decode_event(line)
        except InvalidEvent:
            continue
        if event.occurred_at > WALL:
            continue
        expected += [m.model_dump_json() for m in engine.process(event, state).messages]

    await apply_in_batches(processor(database, store_url), scenario_lines(), batch_size)
    got = [value.decode() for value in await queued(database)]
    assert got == expected
    assert len(expected) > 30


async def test_a_batch_applied_twice_adds_nothing(database: AsyncEngine, store_url: str) -> None:
    p = processor(database, store_url)
    batch = raws(scenario_lines())
    await p.apply_batch(batch)
    first = await outbox(database)
    report, _ = await p.apply_batch(batch)  # as after a crash between the commit and the offset commit
    assert await outbox(database) == first
    assert set(k.split(":")[1] for k in report.events) == {"duplicate"}


async def test_bad_input_goes_to_the_outbox_dlq_with_the_original_bytes(database: AsyncEngine, store_url: str) -> None:
    p = processor(database, store_url)
    report, _ = await p.apply_batch(
        [RawEvent(b"{not json", b"key-1", "t/0/1"), RawEvent(b"x" * 2_000_000, None, "t/0/2")]
    )
    rows = [r for r in await outbox(database) if r[0] == "dlq"]
    assert [r[2][:9] for r in rows] == [b"{not json", b"xxxxxxxxx"]
    assert dict(report.rejected) == {"not_JSON": 1, "too_large": 1}


async def test_only_a_keyed_hash_of_patient_ref_is_stored(database: AsyncEngine, store_url: str) -> None:
    await apply_in_batches(processor(database, store_url), scenario_lines(), 500)
    async with database.connect() as conn:
        for table in ("cases", "notes", "patterns", "notifications", "escalations", "processed_events"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            assert rows or table == "notifications"
            assert "MRN-" not in repr(rows), table
        hashes = (await conn.execute(select(t.cases.c.patient_hash))).scalars().all()
    notifications = await queued(database)
    await processor(database, store_url).run_department_stage(everything=True)  # routed: to the outbox
    async with database.connect() as conn:
        notifications += (
            (await conn.execute(select(t.outbox.c.value).where(t.outbox.c.stream != "dlq"))).scalars().all()
        )
    assert notifications
    assert all(h and len(h) == 64 for h in hashes)
    assert not any(b"MRN-" in value for value in notifications)


async def test_the_clock_survives_in_the_store_and_idle_time_fires_timers(
    database: AsyncEngine, store_url: str
) -> None:
    lines = scenario_lines()[:8]  # RIVERA's pattern opens on 2026-02-16; then three bad lines; no acknowledgement
    p = processor(database, store_url)
    await apply_in_batches(p, lines, 3)
    async with database.connect() as conn:
        clock = await conn.scalar(select(t.tasks.c.clock).where(t.tasks.c.task == 0))
    assert clock is not None and clock.isoformat() == "2026-02-17T08:00:00+00:00"  # the task's own clock
    # Events keep arriving (wall time stands still): the clock stays on event time.
    quiet, _ = await p.advance_idle_clock()
    assert not quiet.notifications
    # Then two hours without events: the ticker moves the clock to wall time minus the idle allowance.
    p.wall_clock = lambda: WALL + timedelta(hours=2)
    report, rows = await p.advance_idle_clock()
    assert report.notifications["reminder:clinician"] == 1 and report.escalations["1:unacknowledged"] == 1
    assert rows and all(r.created_at <= WALL + timedelta(hours=1) for r in rows)
    again, _ = await p.advance_idle_clock()
    assert not again.notifications and not again.escalations
    async with database.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(t.outbox)) > 0
        row = (await conn.execute(select(t.tasks).where(t.tasks.c.task == 0))).one()
    # The event clock stays where the records put it: the department stage's settled time goes by it.
    assert row.event_clock.isoformat() == "2026-02-17T08:00:00+00:00" and row.clock > row.event_clock


async def test_providers_keep_the_latest_name_by_event_time(database: AsyncEngine, store_url: str) -> None:
    """A later event renames the provider; an older one arriving late, or one without a name, does not."""
    import json

    from tests.support.events import claim, note, npi

    who = npi("123456789")

    def named(event: dict[str, object], name: str, department: str) -> str:
        key = "rendering_provider" if event["event_type"] == "claim.denied" else "author"
        event[key] = {**event[key], "name": name, "department": department}  # type: ignore[dict-item]
        return json.dumps(event)

    first = named(note("n1", signed_at="2026-02-01T10:00:00Z", service_date="2026-02-01", provider=who), "A. Old", "ED")
    later = named(
        claim("c1", occurred_at="2026-03-01T10:00:00Z", service_date="2026-02-01", provider=who), "A. New", "Cardiology"
    )
    late = named(
        note("n2", signed_at="2026-02-15T10:00:00Z", service_date="2026-02-15", provider=who), "A. Stale", "ED"
    )
    nameless = named(note("n3", signed_at="2026-04-01T10:00:00Z", service_date="2026-04-01", provider=who), "", "ED")
    p = processor(database, store_url)
    for line in (first, later, late, nameless):
        await p.apply_batch(raws([line]))
    async with database.connect() as conn:
        rows = (await conn.execute(select(t.providers))).all()
    assert [(r.npi, r.name, r.department, r.last_seen_at) for r in rows] == [
        (who, "A. New", "Cardiology", datetime(2026, 3, 1, 10, tzinfo=UTC))
    ]


async def test_exposure_and_dormancy_survive_batches_on_the_store(database: AsyncEngine, store_url: str) -> None:
    """A clinician pattern without a documentation check (frequency): its later visits are loaded and counted
    across batches, it goes dormant without them and resolves once three are 45 days old; as in memory."""
    from engine.domain.rules import Engine
    from engine.domain.state import State
    from schemas import decode_event
    from tests.support.events import claim, note, npi

    provider = npi("187654321")
    lines = [
        json.dumps(
            claim(
                f"f{i}",
                occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
                service_date=f"2026-01-0{i + 5}",
                provider=provider,
                adjustments=[("CO", "151", "100.00")],
                remarks=[],
                procedure_code="97110",
            )
        )
        for i in range(3)
    ]
    # Quiet by April 5 with no visits: dormant. Then three visits in April, old enough by late May: resolved.
    lines.append(
        json.dumps(note("late", signed_at="2026-04-06T10:00:00Z", service_date="2026-04-06", provider=npi("176543210")))
    )
    lines += [
        json.dumps(
            note(
                f"v{i}",
                signed_at=f"2026-04-1{i}T17:00:00Z",
                service_date=f"2026-04-1{i}",
                provider=provider,
                procedure_codes=["97110"],
            )
        )
        for i in range(3)
    ]
    lines.append(
        json.dumps(note("end", signed_at="2026-06-01T10:00:00Z", service_date="2026-06-01", provider=npi("176543210")))
    )

    expected: list[str] = []
    engine, state = Engine(), State()
    for line in lines:
        expected += [m.model_dump_json() for m in engine.process(decode_event(line), state).messages]
    await apply_in_batches(processor(database, store_url), lines, 1)
    got = [value.decode() for value in await queued(database)]
    assert got == expected
    kinds = [json.loads(v)["kind"] for v in got if "kind" in json.loads(v)]
    assert kinds.count("pattern_dormant") == 1 and kinds.count("pattern_resolved") == 2
    resolved = [json.loads(v) for v in got if json.loads(v).get("kind") == "pattern_resolved"]
    assert {r["created_at"] for r in resolved} == {"2026-05-27T00:00:00Z"}  # April 12 + 45 days
