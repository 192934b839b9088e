"""Two `serve` replicas in one consumer group over six partitions give the same outcome as one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.database import connect
from engine.store import tables as t
from tests.conftest import reset_postgres
from tests.e2e.conftest import Stack
from tests.support.events import ack, claim, note, npi

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

DEPARTMENTS = ["Internal Medicine", "Family Medicine", "Cardiology"]


def providers() -> list[str]:
    return [npi(f"1{index:08d}") for index in range(1, 25)]


def waves() -> list[list[str]]:
    """Denials that open a pattern per provider; then acknowledgements from half; then, much later, one
    event that moves the clock past every reminder and escalation. Each wave waits for the one before,
    because only the order within a provider's partition is guaranteed."""
    denials, acks = [], []
    for index, provider in enumerate(providers()):
        department = DEPARTMENTS[index % 3]
        for visit in range(3):
            denials.append(
                claim(
                    f"d{index}-{visit}",
                    occurred_at=f"2026-03-0{visit + 1}T{index % 20:02d}:00:00Z",
                    service_date=f"2026-02-0{visit + 1}",
                    provider=provider,
                    department=department,
                    procedure_code="99214",
                    adjustments=[("CO", "150", "130.00")],
                    amount="130.00",
                )
            )
        if index % 2 == 0:
            acks.append(ack(f"a{index}", occurred_at="2026-03-05T12:00:00Z", provider=provider, procedure_code="99214"))
    later = [note("tick", signed_at="2026-04-20T12:00:00Z", service_date="2026-04-20", provider=npi("999999999"))]
    return [[json.dumps(e) for e in wave] for wave in (denials, acks, later)]


async def run(stack: Stack, replicas: int) -> tuple[set[str], list[str]]:
    for _ in range(replicas):
        stack.start()
    applied = 0
    for wave in waves():
        await stack.publish(wave)
        applied += len(wave)
        await stack.wait_until_applied(applied, timeout=120)
    for process in stack.processes:
        assert stack.stop(process) == 0
    database = connect(stack.database_url)
    async with database.connect() as conn:
        ids = set((await conn.execute(select(t.outbox.c.message_id))).scalars())
    await database.dispose()
    logs = [p.read_text() for p in sorted(stack.logs.glob("serve-*.log"))]
    return ids, logs


async def test_two_replicas_give_the_same_outcome_as_one(stack: Stack, tmp_path: Path) -> None:
    single, _ = await run(stack, replicas=1)
    assert len(single) > 24 * 2  # every pattern opened, plus reminders, escalations, systemic

    await reset_postgres(stack.database_url)
    pair_logs = tmp_path / "pair"
    pair_logs.mkdir()
    pair = Stack(stack.bootstrap, stack.database_url, pair_logs, prefix=f"t{uuid.uuid4().hex[:8]}.")
    try:
        both, logs = await run(pair, replicas=2)
    finally:
        for process in pair.processes:
            if process.poll() is None:
                process.kill()
    assert both == single
    assert all('"batch applied"' in log for log in logs), "each replica must have consumed a share"
