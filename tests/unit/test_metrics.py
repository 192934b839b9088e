"""Docloop's Prometheus metrics and the side port (Starlette on uvicorn) that serves them (no broker, an
embedded SQLite store)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from engine.database import connect
from engine.http import CachedCheck, SidePort, build_app, json_response
from engine.metrics import Metrics
from engine.service import BatchReport, Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t
from engine.store.migrate import upgrade
from schemas import RootCause
from tests.support.scenario import scenario_lines

WALL = datetime(2026, 11, 27, 12, tzinfo=UTC)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.exposition()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_a_batch_report_moves_the_counters_by_its_labels() -> None:
    metrics = Metrics()
    report = BatchReport(
        events=Counter({"claim.denied:applied": 3, "note.signed:duplicate": 1}),
        rejected=Counter({"not_JSON": 2}),
        notifications=Counter({"pattern_opened:clinician": 1, "pattern_opened:billing": 1}),
        escalations=Counter({"2:amount_at_risk": 1}),
    )
    metrics.observe_batch(report, 0.2)
    metrics.observe_batch(report, 0.02)

    assert value(metrics, "docloop_events_total", event_type="claim.denied", result="applied") == 6
    assert value(metrics, "docloop_events_total", event_type="note.signed", result="duplicate") == 2
    assert value(metrics, "docloop_dlq_total", reason="not_JSON") == 4
    assert value(metrics, "docloop_notifications_total", kind="pattern_opened", audience="clinician") == 2
    assert value(metrics, "docloop_escalations_total", level="2", reason="amount_at_risk") == 2
    assert value(metrics, "docloop_batch_duration_seconds_count") == 2
    assert value(metrics, "docloop_batch_duration_seconds_bucket", le="0.025") == 1
    assert value(metrics, "docloop_outbox_backlog") == 0
    # Every root cause has a gauge from the start, so "none open" reads 0 instead of no data.
    for cause in RootCause:
        assert value(metrics, "docloop_open_patterns", root_cause=cause.value) == 0


def test_two_instances_do_not_share_a_registry() -> None:
    first, second = Metrics(), Metrics()
    first.record(BatchReport(events=Counter({"claim.denied:applied": 1})))
    assert value(second, "docloop_events_total", event_type="claim.denied", result="applied") is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'docloop.db'}"
    await asyncio.to_thread(upgrade, url)
    database = connect(url)
    yield database
    await database.dispose()


async def test_refresh_reads_open_patterns_by_root_cause_and_the_outbox_backlog(store: AsyncEngine) -> None:
    processor = Processor(Settings(database_url="sqlite://"), store, wall_clock=lambda: WALL)
    lines = scenario_lines()
    await processor.apply_batch([RawEvent(line.encode(), None, f"s:{i}") for i, line in enumerate(lines)])
    async with store.connect() as conn:
        rows = await conn.execute(
            select(t.patterns.c.root_cause, func.count())
            .where(t.patterns.c.status == "open")
            .group_by(t.patterns.c.root_cause)
        )
        expected: dict[str, int] = {cause: count for cause, count in rows}
        unpublished = await conn.scalar(select(func.count()).select_from(t.outbox))
    assert expected and unpublished  # the scenario opens patterns and queues messages

    metrics = Metrics()
    await metrics.refresh(store)
    for cause in RootCause:
        assert value(metrics, "docloop_open_patterns", root_cause=cause.value) == expected.get(cause.value, 0)
    assert value(metrics, "docloop_outbox_backlog") == unpublished

    async with store.begin() as conn:  # everything published, every pattern closed: the gauges follow
        await conn.execute(t.outbox.update().values(published_at=WALL))
        await conn.execute(t.patterns.update().values(status="resolved"))
    await metrics.refresh(store)
    assert value(metrics, "docloop_outbox_backlog") == 0
    assert all(value(metrics, "docloop_open_patterns", root_cause=c.value) == 0 for c in RootCause)


async def request(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *header_lines = head.decode().strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    body = b""
    if not raw.startswith(b"HEAD") and "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    writer.close()
    return status, headers, body


async def test_the_side_port_routes_get_and_head_and_rejects_the_rest() -> None:
    metrics = Metrics()
    metrics.record(BatchReport(events=Counter({"claim.denied:applied": 1})))

    async def scrape(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def alive(request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def broken(request: Request) -> Response:
        raise RuntimeError("MRN-1234 must not leak")

    server = SidePort(build_app(scrape, alive, broken), "127.0.0.1", 0)
    await server.start()
    port = server.port
    try:
        status, headers, body = await request(server.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-type"].startswith("text/plain")
        assert b'docloop_events_total{event_type="claim.denied",result="applied"} 1.0' in body

        status, headers, body = await request(server.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and body == b"" and int(headers["content-length"]) > 0

        assert (await request(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == "HTTP/1.1 404 Not Found"
        status, headers, _ = await request(
            server.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        assert status == "HTTP/1.1 405 Method Not Allowed"
        assert set(headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
        assert (await request(server.port, b"nonsense\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
        status, _, body = await request(server.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 500 Internal Server Error" and b"MRN" not in body
    finally:
        await server.stop()
    with pytest.raises(OSError):  # stopped: nothing listens any more
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_taken_port_raises_at_start() -> None:
    first = SidePort(build_app(_ok, _ok, _ok), "127.0.0.1", 0)
    await first.start()
    try:
        with pytest.raises(OSError):
            await SidePort(build_app(_ok, _ok, _ok), "127.0.0.1", first.port).start()
    finally:
        await first.stop()


async def _ok(request: Request) -> Response:
    return Response("ok")


async def test_a_cached_check_runs_once_for_concurrent_callers_and_again_after_its_ttl() -> None:
    calls = 0
    now = [100.0]
    gate = asyncio.Event()

    async def check() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return f"ok {calls}"

    cached = CachedCheck(check, ttl=2.0, clock=lambda: now[0])
    waiting = [asyncio.create_task(cached.get()) for _ in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    assert set(await asyncio.gather(*waiting)) == {"ok 1"} and calls == 1
    now[0] += 1.9
    assert await cached.get() == "ok 1" and calls == 1  # still fresh
    now[0] += 0.2
    assert await cached.get() == "ok 2" and calls == 2  # expired: checked again


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_check() -> None:
    gate = asyncio.Event()

    async def check() -> str:
        await gate.wait()
        return "ok"

    cached = CachedCheck(check, ttl=2.0)
    impatient = asyncio.create_task(cached.get())
    patient = asyncio.create_task(cached.get())
    await asyncio.sleep(0.01)
    impatient.cancel()
    gate.set()
    assert await patient == "ok"
