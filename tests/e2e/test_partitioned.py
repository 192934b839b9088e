"""Live equals replay on any partitioning (issue #13), on the real Kafka and PostgreSQL.

The simulator's quarter goes over 3 topics x 6 partitions, keyed by provider NPI. Its notes and denials are
published together, its acknowledgements a second later (a notification service that lags, within
DOCLOOP_TASK_IDLE_MS); once with one replica, once with three and two kill -9 during the run. Every
notification and escalation serve publishes must be one `docloop replay --partitions 6` writes, with the same
content, and nothing may be missing (repeats by docloop-message-id are the relay's, after a crash).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select

from engine.database import connect
from engine.serve import timestamp_types
from engine.store import tables as t
from tests.e2e.conftest import ROOT, Stack, as_serve_publishes, message_id

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PARTITIONS = 6
ACKS_LAG_SECONDS = 1.0
CHUNK = 1000
CHUNK_SECONDS = 0.25


@pytest.fixture(scope="module")
def quarter(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], dict[str, dict[str, Any]]]:
    """The simulated quarter and what replay on six partitions makes of it (message id -> message)."""
    folder = tmp_path_factory.mktemp("quarter")
    events = folder / "quarter.jsonl"
    run = [sys.executable, "-m", "engine.cli"]
    subprocess.run([*run, "simulate", "--seed", "3", "--out", str(events)], check=True, cwd=ROOT, capture_output=True)
    out = folder / "replay"
    subprocess.run(
        [*run, "replay", str(events), "--out", str(out), "--partitions", str(PARTITIONS)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    as_serve_publishes(out, events)
    expected: dict[str, dict[str, Any]] = {}
    for name in ("notifications", "escalations"):
        for line in (out / f"{name}.jsonl").read_text().splitlines():
            message = json.loads(line)
            expected[message_id(message)] = message
    return events.read_bytes().splitlines(), expected


async def publish_lagging_acks(stack: Stack, lines: list[bytes]) -> None:
    """A paced feed in the file's (event-time) order: every CHUNK_SECONDS the next CHUNK events' notes and
    denials, and the acknowledgements of the chunk ACKS_LAG_CHUNKS before (a notification service that lags
    by about ACKS_LAG_SECONDS, well within DOCLOOP_TASK_IDLE_MS)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True, linger_ms=20)
    await producer.start()
    chunks = [lines[start : start + CHUNK] for start in range(0, len(lines), CHUNK)]
    lag = round(ACKS_LAG_SECONDS / CHUNK_SECONDS)
    acks_topic = stack.topic("acks")
    try:
        started = time.monotonic()
        for step in range(len(chunks) + lag):
            await asyncio.sleep(max(0.0, started + step * CHUNK_SECONDS - time.monotonic()))
            now_events = chunks[step] if step < len(chunks) else []
            late_acks = chunks[step - lag] if step >= lag else []
            pending = []
            for value in [
                *(v for v in late_acks if stack.route(v)[0] == acks_topic),
                *(v for v in now_events if stack.route(v)[0] != acks_topic),
            ]:
                topic, key = stack.route(value)
                pending.append(await producer.send(topic, value, key=key))
            await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_until_done(stack: Stack, events: int, timeout: float = 240) -> None:
    """Every event recorded, the department and routing stages caught up, the outbox published."""
    await stack.wait_until_applied(events, timeout=timeout)
    database = connect(stack.database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            async with database.connect() as conn:
                facts = await conn.scalar(select(func.count()).select_from(t.department_facts)) or 0
                facts += await conn.scalar(select(func.count()).select_from(t.routing_queue)) or 0
                pending = await conn.scalar(
                    select(func.count()).select_from(t.outbox).where(t.outbox.c.published_at.is_(None))
                )
            if facts == 0 and pending == 0:
                return
            await asyncio.sleep(0.5)
    finally:
        await database.dispose()
    raise AssertionError(f"department stage or relay not done; logs:\n{stack.log_text()[-3000:]}")


async def published(stack: Stack, expected: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in ("notifications", "escalations"):
        count = sum(1 for message in expected.values() if ("escalation_id" in message) == (name == "escalations"))
        for _, value, headers in await stack.read(name, count, timeout=60):
            message = json.loads(value)
            key = message_id(message)
            assert headers["docloop-message-id"].decode() == key
            if key in found:  # a repeat (the relay after a crash) must be the same message
                assert found[key] == message
            found[key] = message
    return found


def compare(found: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    missing = sorted(expected.keys() - found.keys())
    extra = sorted(found.keys() - expected.keys())
    differing = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    if missing or extra or differing:
        import os

        report = {
            "missing": [expected[k] for k in missing],
            "extra": [found[k] for k in extra],
            "differing": [(expected[k], found[k]) for k in differing],
        }
        Path(os.environ.get("DOCLOOP_TEST_DIFF", "/tmp/docloop-partitioned-diff.json")).write_text(json.dumps(report))

    def named(message: dict[str, Any]) -> tuple[str, str]:
        return (message.get("kind") or message.get("reason") or "?", message["created_at"])

    assert (len(missing), len(extra), len(differing)) == (0, 0, 0), (
        f"missing {len(missing)} e.g. {[named(expected[k]) for k in missing[:5]]}, "
        f"extra {len(extra)} e.g. {[named(found[k]) for k in extra[:5]]}, "
        f"differing {len(differing)} e.g. "
        f"{[(expected[k], found[k]) for k in differing[:1]]}"
    )


async def test_one_replica_with_a_lagging_topic_publishes_what_replay_writes(
    stack: Stack, quarter: tuple[list[bytes], dict[str, dict[str, Any]]]
) -> None:
    lines, expected = quarter
    stack.partitions = PARTITIONS
    stack.start()
    # serve declared its inputs stamped by the broker: the idle allowance runs from the append time.
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        inbound = [stack.topic(name) for name in ("claims", "notes", "acks", "reviews")]
        stamps = await timestamp_types(admin, [*inbound, stack.topic("notifications")])
    finally:
        await admin.close()
    assert stamps == {**dict.fromkeys(inbound, "LogAppendTime"), stack.topic("notifications"): "CreateTime"}
    await publish_lagging_acks(stack, lines)
    await wait_until_done(stack, len(lines))

    compare(await published(stack, expected), expected)
    assert stack.stop(stack.processes[0]) == 0
    assert await stack.committed_lag() == 0


async def test_three_replicas_and_two_kills_publish_what_replay_writes(
    stack: Stack, quarter: tuple[list[bytes], dict[str, dict[str, Any]]]
) -> None:
    lines, expected = quarter
    stack.partitions = PARTITIONS
    # Each kill is followed by a rebalance (10 s until the group drops the dead member, then a join); records
    # wait in the broker meanwhile, and the tasks that move are read again from their stored positions. The
    # default DOCLOOP_TASK_IDLE_MS (2 s) applies.
    replicas = [stack.start(), stack.start(), stack.start()]
    publishing = asyncio.create_task(publish_lagging_acks(stack, lines))
    for victim in replicas[:2]:  # two kill -9 while events flow; a replacement joins each time
        await asyncio.sleep(2.5)
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait, 30)
        await asyncio.to_thread(stack.start)  # the feed goes on while the replacement starts
    await publishing
    await wait_until_done(stack, len(lines))

    compare(await published(stack, expected), expected)
    for process in stack.processes:
        if process.poll() is None:
            assert stack.stop(process) == 0
    assert await stack.committed_lag() == 0


def test_the_quarter_is_big_enough_to_mean_something(quarter: tuple[list[bytes], dict[str, dict[str, Any]]]) -> None:
    lines, expected = quarter
    assert len(lines) > 20_000
    kinds = {m.get("kind") or m.get("reason") for m in expected.values()}
    assert {"pattern_opened", "reminder", "pre_bill_alert", "unacknowledged", "systemic"} <= kinds
