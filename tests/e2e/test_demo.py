"""`docloop demo` on the real broker: every step shows, and its report agrees with the JSON report."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.e2e.conftest import ROOT, kafka_bootstrap
from tests.support.cli import report_json

pytestmark = [pytest.mark.kafka]


def test_the_demo_shows_the_loop_and_ends_with_a_report_that_agrees_with_the_store(tmp_path: Path) -> None:
    env = {**os.environ, "DOCLOOP_KAFKA_BOOTSTRAP": kafka_bootstrap()}
    run = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--providers", "12", "--days", "45", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for step in ("1/5 simulated", "2/5 docloop serve is up", "3/5 published", "4/5 engine applied", "5/5 report"):
        assert step in out
    # What people receive: digests, pre-bill alerts and systemic escalations (the rest is grouped or held).
    assert "-> digest to clinician NPI" in out and "-> digest to team 'billing'" in out
    assert "!! escalation level" in out
    assert "What people received, per recipient" in out and "by delivery: digest" in out
    assert (tmp_path / "report.html").stat().st_size > 10_000

    report = report_json(tmp_path / "docloop.db")
    totals = report["totals"]
    headline = re.search(
        r"Patterns: (\d+) \((\d+) open, (\d+) resolved, (\d+) dormant \(no visits to judge by\), (\d+) withdrawn, "
        r"(\d+) acknowledged\)",
        out,
    )
    assert headline is not None
    assert [int(g) for g in headline.groups()] == [
        totals["patterns"],
        totals["open"],
        totals["resolved"],
        totals["dormant"],
        totals["withdrawn"],
        totals["acknowledged"],
    ]
    assert f"Escalations: {totals['escalations']} " in out
    received = re.findall(r"^  (\S+:\S+)\s+([\d,]+)$", out, flags=re.MULTILINE)
    escalations_received = sum(int(n.replace(",", "")) for k, n in received if k.startswith("escalation:"))
    assert escalations_received == totals["escalations"]
    # The demo cleans up after itself: its topics are gone.
    prefix = re.search(r"topics (demo\d+\.)\*", out)
    assert prefix is not None
    assert not [topic for topic in asyncio.run(list_topics()) if topic.startswith(prefix.group(1))]


async def list_topics() -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap())
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()
