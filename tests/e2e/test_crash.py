"""kill -9 at each step of the commit protocol loses no input and queues no fact twice."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.database import connect
from engine.store import tables as t
from tests.e2e.conftest import Stack, message_id
from tests.support.scenario import scenario_lines

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

VALID_EVENTS = 50  # the scenario's valid events, each recorded once


def ids_in(path: Path) -> list[str]:
    return [message_id(json.loads(line)) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "crash_at",
    [
        "before_commit:3",  # inside the batch transaction: rolled back, the batch comes again
        "after_commit:3",  # committed, offsets not: the batch comes again and is all duplicates
        "relay_before_mark:2",  # published, not marked: published again with the same message ids
        "external",  # kill -9 from outside, wherever the service happens to be
    ],
)
async def test_a_crash_loses_no_input_and_duplicates_no_outbox_row(stack: Stack, replayed: Path, crash_at: str) -> None:
    stack.single_topic, stack.partitions = True, 1
    stack.extra_env = {"DOCLOOP_BATCH_MAX_RECORDS": "5", "DOCLOOP_RELAY_BATCH_SIZE": "4"}
    first = stack.start(**({} if crash_at == "external" else {"DOCLOOP_CRASH_AT": crash_at}))
    await stack.publish(scenario_lines())
    if crash_at == "external":
        await asyncio.sleep(2.0)
        first.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, 60) == -signal.SIGKILL

    stack.start()
    await stack.wait_until_applied(VALID_EVENTS)

    expected_notifications = ids_in(replayed / "notifications.jsonl")
    expected_escalations = ids_in(replayed / "escalations.jsonl")
    database = connect(stack.database_url)
    async with database.connect() as conn:
        rows = (await conn.execute(select(t.outbox.c.stream, t.outbox.c.message_id).order_by(t.outbox.c.seq))).all()
        applied = await conn.scalar(select(func.count()).select_from(t.processed_events))
    await database.dispose()
    assert applied == VALID_EVENTS
    # Each once (tasks and the department stage write the outbox in their own turns: order is per task).
    assert sorted(m for s, m in rows if s == "notifications") == sorted(expected_notifications)
    assert sorted(m for s, m in rows if s == "escalations") == sorted(expected_escalations)
    assert sum(1 for s, _ in rows if s == "dlq") == 5

    published = await stack.read("notifications", len(expected_notifications))
    published_ids = [h["docloop-message-id"].decode() for _, _, h in published]
    assert set(published_ids) == set(expected_notifications)  # at least once each, nothing else
    for _, value, headers in published:
        assert message_id(json.loads(value)) == headers["docloop-message-id"].decode()
    escalations = await stack.read("escalations", len(expected_escalations))
    assert {h["docloop-message-id"].decode() for _, _, h in escalations} == set(expected_escalations)

    assert stack.stop(stack.processes[-1]) == 0
    assert await stack.committed_lag() == 0
