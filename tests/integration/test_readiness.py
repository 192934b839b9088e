"""/readyz under a burst of probes, on the real PostgreSQL and Kafka: one database query and one broker request
per cache period, however many callers, and no false 503 while both answer."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from engine.serve import Service
from engine.settings import Settings
from tests.conftest import postgres_url

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_a_burst_of_probes_costs_one_query_and_one_broker_request_per_period() -> None:
    bootstrap = os.environ.get("DOCLOOP_TEST_KAFKA") or pytest.skip("DOCLOOP_TEST_KAFKA is not set")
    settings = Settings(database_url=postgres_url(), kafka_bootstrap=bootstrap, readiness_cache_seconds=2)
    service = Service(settings)
    await service.broker.connect()
    queries: list[str] = []
    event.listen(
        service.database.sync_engine, "before_cursor_execute", lambda *args: queries.append(args[2]), named=False
    )
    pings = 0
    ping = service.broker.ping

    async def counted_ping(timeout: float | None) -> bool:
        nonlocal pings
        pings += 1
        return await ping(timeout)

    service.broker.ping = counted_ping  # type: ignore[method-assign]
    now = [1000.0]
    for check in (service.database_check, service.kafka_check):
        check.clock = lambda: now[0]
    app = service.http_app()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://side") as client:

            async def burst() -> list[Any]:
                return list(await asyncio.gather(*(client.get("/readyz") for _ in range(300))))

            first = await burst()
            assert [r.status_code for r in first] == [200] * 300  # no false 503
            assert first[0].json() == {"ready": True, "checks": {"database": "ok", "kafka": "ok", "relay": "ok"}}
            assert (queries.count("SELECT 1"), pings) == (1, 1)

            now[0] += 1.5  # within the period: answered from the cache
            assert {r.status_code for r in await burst()} == {200}
            assert (queries.count("SELECT 1"), pings) == (1, 1)

            now[0] += 1.0  # the period is over: one more check each, shared by the whole burst
            assert {r.status_code for r in await burst()} == {200}
            assert (queries.count("SELECT 1"), pings) == (2, 2)
    finally:
        await service.broker.stop()
        await service.database.dispose()
