"""`docloop serve` end to end on the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.database import connect
from engine.store import tables as t
from tests.e2e.conftest import Stack, message_id
from tests.support.events import claim, npi
from tests.support.scenario import scenario_lines

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

VALID_EVENTS = 50  # the scenario's valid events, each recorded once (its duplicate is not)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_serve_publishes_what_replay_writes_with_the_same_ids(stack: Stack, replayed: Path) -> None:
    # One single-partition topic for all inbound events: the same delivery order as the file.
    stack.single_topic, stack.partitions = True, 1
    stack.start()
    await stack.publish(scenario_lines())
    await stack.wait_until_applied(VALID_EVENTS)

    expected = lines_of(replayed / "notifications.jsonl")
    notifications = await stack.read("notifications", len(expected))
    assert [value.decode() for _, value, _ in notifications] == expected  # one task: the same order
    for key, value, headers in notifications:
        message = json.loads(value)
        assert headers["docloop-message-id"].decode() == message_id(message)
        assert key is not None and key.decode() == message["recipient"]["id"]

    expected = lines_of(replayed / "escalations.jsonl")
    escalations = await stack.read("escalations", len(expected))
    # The department stage publishes systemic escalations in its own turn: same ids and contents.
    assert sorted(value.decode() for _, value, _ in escalations) == sorted(expected)
    assert all(key is not None and key.decode() == json.loads(v)["department"] for key, v, _ in escalations)

    dead = await stack.read("dlq", 5)
    bad = [json.loads(line)["raw"] for line in lines_of(replayed / "dlq.jsonl")]
    assert [value.decode() for _, value, _ in dead] == bad
    assert all(headers["docloop-reason"] and b"MRN-" not in headers["docloop-reason"] for _, _, headers in dead)

    assert stack.stop(stack.processes[0]) == 0  # SIGTERM: drains and exits cleanly
    assert await stack.committed_lag() == 0


async def test_poison_input_goes_to_the_dlq_and_the_partition_keeps_flowing(stack: Stack) -> None:
    stack.partitions = 1
    stack.extra_env = {"DOCLOOP_MAX_EVENT_BYTES": "4096"}
    provider = npi("123456789")
    good = claim("ok-1", occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=provider)
    wrong_types = {**good, "event_id": "bad-types", "lines": "not a list", "patient_ref": "MRN-SECRET"}
    bad_npi = {**good, "event_id": "bad-npi", "rendering_provider": {"npi": "1234567890", "department": "IM"}}
    huge = {**good, "event_id": "huge", "padding": "x" * 10_000}
    poison = [
        b"\x00\xffnot json",
        json.dumps(wrong_types).encode(),
        json.dumps(bad_npi).encode(),
        json.dumps(huge).encode(),
    ]
    stack.start()
    await stack.publish([*poison, json.dumps(good).encode()], key_for={i: provider.encode() for i in range(5)})
    await stack.wait_until_applied(1)

    dead = await stack.read("dlq", 4)
    assert [value for _, value, _ in dead] == poison
    assert all(key == provider.encode() for key, _, _ in dead)
    reasons = [headers["docloop-reason"].decode() for _, _, headers in dead]
    assert [r.split(":")[0] for r in reasons] == ["not JSON", "invalid event", "invalid event", "too large"]
    assert not any("MRN-SECRET" in r or "1234567890" in r for r in reasons)
    assert stack.stop(stack.processes[0]) == 0
    assert await stack.committed_lag() == 0
    assert "MRN-SECRET" not in stack.log_text()


async def test_a_silence_on_its_topic_holds_what_it_matches(stack: Stack, replayed: Path) -> None:
    """A silence for Family Medicine published on the silences topic before the scenario: every Family
    Medicine message serve publishes is held (recorded for systems, named by the silence), the rest as replay."""
    stack.single_topic, stack.partitions = True, 1
    stack.start()
    silence = {
        "event_type": "feedback.silence",
        "schema_version": 1,
        "event_id": "silence-fm-1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "source": "ops-console",
        "silence_id": "fm-outage",
        "matchers": {"department": ["Family Medicine"]},
        "ends_at": "2026-12-31T00:00:00Z",
        "author": "j.ops",
        "reason": "payer portal outage",
    }
    await stack.publish([json.dumps(silence)])
    database = connect(stack.database_url)
    try:
        for _ in range(100):
            async with database.connect() as conn:
                stored = await conn.scalar(select(func.count()).select_from(t.routing_events))
                stored = (stored or 0) + (await conn.scalar(select(func.count()).select_from(t.routing_silences)) or 0)
            if stored:
                break
            await asyncio.sleep(0.2)
    finally:
        await database.dispose()
    assert stored, stack.log_text()[-3000:]
    await stack.publish(scenario_lines())
    await stack.wait_until_applied(VALID_EVENTS)

    expected = {message_id(m): m for m in map(json.loads, lines_of(replayed / "notifications.jsonl"))}
    per_fact = sum(1 for m in expected.values() if m.get("kind") != "digest")
    found = {message_id(json.loads(v)): json.loads(v) for _, v, _ in await stack.read("notifications", per_fact)}
    family = [
        m for m in found.values() if m.get("kind") != "digest" and m["pattern"]["department"] == "Family Medicine"
    ]
    assert family and all(m["delivery"] == "held" and m["delivery_reason"] == "silence:fm-outage" for m in family)
    others = [
        m for m in found.values() if m.get("kind") != "digest" and m["pattern"]["department"] != "Family Medicine"
    ]
    assert others and all(m == expected[message_id(m)] for m in others)
    assert stack.stop(stack.processes[0]) == 0
