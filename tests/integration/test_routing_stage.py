"""The routing stage over a real store (SQLite and PostgreSQL): delivery decided on the watermark, the same
whatever the passes, silences applied at their event time, inhibitions opened and closed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.service import Processor, RawEvent, outbox_row
from engine.settings import Settings
from engine.store import repository
from engine.store import routing as routing_store
from engine.store import tables as t
from engine.volume import counts, load_routed, summarize
from tests.support.scenario import scenario_lines

WALL = datetime(2026, 11, 27, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def processor(database: AsyncEngine, url: str) -> Processor:
    return Processor(Settings(database_url=url, topic_partitions=1), database, wall_clock=lambda: WALL)


async def apply_scenario(p: Processor) -> None:
    raws = [RawEvent(line.encode(), None, f"scenario:{i}") for i, line in enumerate(scenario_lines(), start=1)]
    for start in range(0, len(raws), 500):
        await p.apply_batch(raws[start : start + 500])


async def published(database: AsyncEngine) -> list[dict[str, Any]]:
    async with database.connect() as conn:
        query = select(t.outbox.c.value).where(t.outbox.c.stream != "dlq").order_by(t.outbox.c.seq)
        return [json.loads(value) for value in (await conn.execute(query)).scalars()]


def message_id(m: dict[str, Any]) -> str:
    return str(m.get("notification_id") or m.get("escalation_id") or m["digest_id"])


def silence(silence_id: str, action: str, occurred: str, **fields: Any) -> bytes:
    body = {
        "event_type": "feedback.silence",
        "schema_version": 1,
        "event_id": f"{silence_id}-{action}-{occurred}",
        "occurred_at": occurred,
        "source": "ops-console",
        "silence_id": silence_id,
        "action": action,
        "author": "j.ops",
        "reason": "payer portal outage",
        **fields,
    }
    return json.dumps(body).encode()


async def test_routing_in_many_small_passes_equals_replay(
    database: AsyncEngine, store_url: str, tmp_path: Path
) -> None:
    """serve routes whatever the watermark allows, pass by pass; replay routes everything at once. The
    messages, their deliveries and the digests must not depend on where the passes cut."""
    p = processor(database, store_url)
    await apply_scenario(p)
    async with database.begin() as conn:
        stage = await repository.run_department_stage(conn, p.departments, 1, everything=True)
        await routing_store.queue(conn, [outbox_row(e) for e in stage.escalations])
        await routing_store.record_closures(conn, [routing_store.Closure(*c) for c in stage.closed])
        times = sorted(set((await conn.execute(select(t.routing_queue.c.created_at))).scalars()))
    assert len(times) > 10
    # At each message time, and between them (where digests fall due with no message to route), then past the end.
    steps = sorted({at + delta for at in times for delta in (timedelta(0), timedelta(minutes=45), timedelta(hours=7))})
    for limit in steps:
        async with database.begin() as conn:
            await routing_store.run_routing_stage(conn, p.router, limit)
    await p.run_department_stage(everything=True)  # drains the digests still pending, as replay does

    out = tmp_path / "replay"
    command = [sys.executable, "-m", "engine.cli", "replay", str(ROOT / "engine/examples/scenario.jsonl")]
    subprocess.run([*command, "--out", str(out), "--partitions", "1"], check=True, cwd=ROOT, capture_output=True)
    replayed = [
        json.loads(line) for name in ("notifications", "escalations") for line in (out / f"{name}.jsonl").open()
    ]
    mine = await published(database)
    assert {message_id(m): m for m in mine} == {message_id(m): m for m in replayed}
    assert len(mine) == len(replayed)
    # The per-day counts the stage keeps for the report are those of what it published.
    async with database.connect() as conn:
        kept = await routing_store.load_volume(conn)
    assert kept == counts(load_routed(out))
    assert summarize(kept).of("clinician").received > 0
    kinds = {(m.get("kind", "escalation"), m["delivery"]) for m in mine}
    assert {("digest", "send"), ("pattern_opened", "digest"), ("pre_bill_alert", "send")} <= kinds
    assert ("escalation", "held") in kinds  # a per-provider escalation under the systemic one


async def test_a_silence_read_again_after_a_crash_is_not_applied_again(database: AsyncEngine, store_url: str) -> None:
    """A crash between keeping silences and the consumer's commit brings them again. A `set` already applied and
    expired must not silence again: the routing stage deletes what it applied, so the event id is kept among the
    processed events."""
    p = processor(database, store_url)
    matchers = {"department": ["Family Medicine"]}
    set_ = silence("s-again", "set", "2026-01-01T00:00:00Z", matchers=matchers, ends_at="2026-12-31T00:00:00Z")
    expire = silence("s-again", "expire", "2026-01-05T00:00:00Z")
    assert await p.record_silence(RawEvent(set_, None, "ops:1")) is None
    assert await p.record_silence(RawEvent(expire, None, "ops:2")) is None
    await p.run_department_stage(everything=True)  # both applied: the silence ended on 2026-01-05
    assert await p.record_silence(RawEvent(set_, None, "ops:1")) is None  # redelivered: a repeat, not an error
    await apply_scenario(p)
    await p.run_department_stage(everything=True)
    messages = await published(database)
    family = [m for m in messages if (m.get("pattern") or {}).get("department") == "Family Medicine"]
    assert family and not any(m.get("delivery_reason") == "silence:s-again" for m in messages)


async def test_a_silence_holds_what_it_matches_from_its_start_until_it_is_expired(
    database: AsyncEngine, store_url: str
) -> None:
    """Set for Family Medicine from 2026-02-01 to 2026-12-31, then expired on 2026-03-20: what Family Medicine
    gets in between is held (reason names the silence) and is in no digest; before and after, it flows."""
    p = processor(database, store_url)
    matchers = {"department": ["Family Medicine"]}
    start, expired = "2026-02-01T00:00:00Z", "2026-03-20T00:00:00Z"
    set_ = silence("s-fm", "set", start, matchers=matchers, ends_at="2026-12-31T00:00:00Z")
    assert await p.record_silence(RawEvent(set_, None, "ops:1")) is None
    assert await p.record_silence(RawEvent(silence("s-fm", "expire", expired), None, "ops:2")) is None
    reason = await p.record_silence(RawEvent(b'{"event_type": "feedback.silence", "schema_version": 1}', None, "ops:3"))
    assert reason is not None and "MRN" not in reason
    await apply_scenario(p)
    await p.run_department_stage(everything=True)

    messages = await published(database)
    covered = {i for m in messages if m.get("kind") == "digest" for i in m["covers"]}
    family = [
        m
        for m in messages
        if m.get("kind") != "digest"
        and (m.get("pattern") or {}).get("department", m.get("department")) == "Family Medicine"
    ]
    during = [m for m in family if start <= m["created_at"] < expired]
    after = [m for m in family if m["created_at"] >= expired]
    assert during and after
    assert all(m["delivery"] == "held" and m["delivery_reason"] == "silence:s-fm" for m in during)
    assert not covered & {message_id(m) for m in during}
    assert all(m["delivery_reason"] != "silence:s-fm" for m in after)
    async with database.connect() as conn:
        stored = (await conn.execute(select(t.routing_silences))).one()
        dead = (await conn.execute(select(t.outbox.c.reason).where(t.outbox.c.stream == "dlq"))).scalars().all()
    assert stored.ends_at == datetime(2026, 3, 20, tzinfo=UTC)
    assert any("silence" in str(r) or "needs matchers" in str(r) or "invalid" in str(r) for r in dead)


async def test_a_systemic_escalation_inhibits_its_pair_until_the_pair_has_no_open_pattern(
    database: AsyncEngine, store_url: str
) -> None:
    """Internal Medicine's E/M pair: the systemic escalation holds the per-provider escalations raised while
    it is open; once no pattern of the pair is open (the last ones went dormant), the inhibition is gone."""
    p = processor(database, store_url)
    await apply_scenario(p)
    async with database.begin() as conn:
        stage = await repository.run_department_stage(conn, p.departments, 1, everything=True)
        await routing_store.queue(conn, [outbox_row(e) for e in stage.escalations])
        await routing_store.record_closures(conn, [routing_store.Closure(*c) for c in stage.closed])
    pair = ("Internal Medicine", "em_level_unsupported")
    closed_at = min(at for at, *closed in stage.closed if tuple(closed) == pair)
    # Route up to just before the pair closed: the inhibition stands.
    async with database.begin() as conn:
        await routing_store.run_routing_stage(conn, p.router, closed_at)
        inhibitions = (await conn.execute(select(t.routing_inhibitions.c.key))).scalars().all()
    assert inhibitions == [
        "systemic escalation covers its providers|department=Internal Medicine|root_cause=em_level_unsupported"
    ]
    await p.run_department_stage(everything=True)
    async with database.connect() as conn:
        assert (await conn.execute(select(t.routing_inhibitions))).all() == []
    escalations = [m for m in await published(database) if "escalation_id" in m]
    held = [m for m in escalations if (m["delivery_reason"] or "").startswith("inhibited:")]
    assert held and all((m["department"], m["root_cause"]) == pair and m["pattern_id"] for m in held)
    assert all(m["created_at"] < closed_at.isoformat().replace("+00:00", "Z") for m in held)


async def test_a_pass_cut_at_one_instant_does_not_run_ahead_of_the_rest_of_that_instant(
    database: AsyncEngine, store_url: str, monkeypatch: Any
) -> None:
    """More messages at one instant than a pass takes (PASS_LIMIT, 5,000: resolutions at midnight), and a
    silence an hour later: the first pass must stop its clock at that instant, or the silence applies before the
    rest of the instant's messages, which it then holds (replay routes them all before it)."""
    from tests.unit.test_routing import note_for, pattern

    monkeypatch.setattr(routing_store, "PASS_LIMIT", 2)
    p = processor(database, store_url)
    at = datetime(2026, 3, 2, 0, tzinfo=UTC)
    department = {"department": ["Internal Medicine"]}
    silenced = silence("s-later", "set", "2026-03-02T01:00:00Z", matchers=department, ends_at="2026-12-31T00:00:00Z")
    async with database.begin() as conn:
        await repository.lock_clock(conn)  # (the stage's clock row, as serve's first pass makes it)
        providers = ["1000000010", "1000000028", "1000000036"]
        messages = [note_for(pattern(provider=n), "pattern_opened", "billing", at) for n in providers]
        await routing_store.queue(conn, [outbox_row(m) for m in messages])
    assert await p.record_silence(RawEvent(silenced, None, "ops:1")) is None
    while True:
        async with database.begin() as conn:
            _, applied = await routing_store.run_routing_stage(conn, p.router, None)
        if not applied:
            break
    out = await published(database)
    routed = [m for m in out if m.get("kind") == "pattern_opened"]
    assert len(routed) == 3 and not [m for m in routed if m["delivery"] == "held"]
    [digest] = [m for m in out if m.get("kind") == "digest"]  # billing's, an hour later: all three in it
    assert sorted(digest["covers"]) == sorted(m["notification_id"] for m in routed)
