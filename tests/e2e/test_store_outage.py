"""A database outage pauses consumption: nothing is committed or dropped, and all of it is applied later."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from tests.e2e.conftest import ROOT, Stack
from tests.support.scenario import scenario_lines

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

POSTGRES = str(ROOT / "deploy" / "local" / "postgres.sh")


async def test_serve_waits_out_a_postgres_outage_and_loses_nothing(stack: Stack) -> None:
    stack.single_topic, stack.partitions = True, 1
    lines = scenario_lines()
    service = stack.start()
    await stack.publish(lines[:5])
    await stack.wait_until_applied(5)

    subprocess.run([POSTGRES, "stop"], check=True, capture_output=True)
    try:
        await stack.publish(lines[5:])
        await asyncio.sleep(6)
        assert service.poll() is None, "serve must keep running while the store is down"
        assert await stack.committed_lag() == len(lines) - 5, "no offset may be committed during the outage"
    finally:
        subprocess.run([POSTGRES, "start"], check=True, capture_output=True)

    await stack.wait_until_applied(35, timeout=120)
    assert await stack.committed_lag() == 0
    assert stack.stop(service) == 0
    assert "store unavailable" in stack.log_text()
