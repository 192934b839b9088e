"""serve's HTTP side port on the real broker and PostgreSQL: metrics that move, readiness that follows the
database, and logs that never carry a patient identifier."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, Stack
from tests.support.events import claim, npi
from tests.support.scenario import scenario_lines

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

POSTGRES = str(ROOT / "deploy" / "local" / "postgres.sh")
VALID_EVENTS = 50  # the scenario's valid events, each recorded once


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def get(port: int, path: str) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    return await asyncio.to_thread(fetch)


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = await get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def total(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in metrics.items() if n == name and wanted <= sample_labels)


async def wait_for_status(port: int, path: str, status: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        last = await get(port, path)
        if last[0] == status:
            return last[1]
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} still {last[0]} {last[1]!r} after {timeout}s, expected {status}")


async def test_metrics_move_when_events_flow(stack: Stack) -> None:
    stack.single_topic, stack.partitions = True, 1
    port = free_port()
    stack.start(DOCLOOP_HTTP_PORT=str(port), DOCLOOP_METRICS_REFRESH_SECONDS="1")
    assert (await get(port, "/healthz"))[0] == 200
    await wait_for_status(port, "/readyz", 200, timeout=30)
    before = await scrape(port)
    assert total(before, "docloop_events_total") == 0

    await stack.publish(scenario_lines())
    await stack.wait_until_applied(VALID_EVENTS)
    await asyncio.sleep(1.5)  # one refresh of the gauges after the relay emptied the outbox
    after = await scrape(port)

    assert total(after, "docloop_events_total", event_type="claim.denied", result="applied") > 0
    assert total(after, "docloop_events_total", event_type="note.signed", result="applied") > 0
    assert total(after, "docloop_events_total", result="duplicate") == 1
    assert total(after, "docloop_events_total") == VALID_EVENTS + 1
    assert total(after, "docloop_dlq_total") == 5
    assert total(after, "docloop_notifications_total", kind="pattern_opened", audience="clinician") > 0
    assert total(after, "docloop_notifications_total", kind="pattern_opened", audience="billing") > 0
    assert total(after, "docloop_escalations_total") > 0
    assert total(after, "docloop_batch_duration_seconds_count") >= 1
    assert ("docloop_outbox_backlog", frozenset()) in after
    assert after[("docloop_outbox_backlog", frozenset())] == 0  # all published
    assert total(after, "docloop_open_patterns") > 0
    # FastStream's own Kafka metrics share the registry.
    assert total(after, "faststream_received_messages_total") >= VALID_EVENTS + 6
    assert total(after, "faststream_published_messages_total") > 0
    assert stack.stop(stack.processes[0]) == 0


async def test_readiness_follows_the_database(stack: Stack) -> None:
    port = free_port()
    service = stack.start(DOCLOOP_HTTP_PORT=str(port), DOCLOOP_READINESS_TIMEOUT_SECONDS="2")
    body = json.loads(await wait_for_status(port, "/readyz", 200, timeout=30))
    assert body == {"ready": True, "checks": {"database": "ok", "kafka": "ok", "relay": "ok"}}

    subprocess.run([POSTGRES, "stop"], check=True, capture_output=True)
    try:
        raw = await wait_for_status(port, "/readyz", 503, timeout=30)
        body = json.loads(raw)
        assert body["ready"] is False
        assert body["checks"]["database"].startswith("failed")
        assert body["checks"]["kafka"] == "ok"
        assert b"docloop:docloop" not in raw and b"postgresql" not in raw  # no URL, no credentials
        assert (await get(port, "/healthz"))[0] == 200  # alive all along: nothing to restart
        assert service.poll() is None
    finally:
        subprocess.run([POSTGRES, "start"], check=True, capture_output=True)

    body = json.loads(await wait_for_status(port, "/readyz", 200, timeout=60))
    assert body["checks"] == {"database": "ok", "kafka": "ok", "relay": "ok"}
    assert stack.stop(service) == 0


async def test_logs_of_a_full_run_carry_no_patient_identifier(stack: Stack) -> None:
    stack.single_topic, stack.partitions = True, 1
    provider = npi("123456789")
    secret = claim("phi-1", occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=provider)
    secret["patient_ref"] = "MRN-LOGCHECK-1"
    broken = {**secret, "event_id": "phi-2", "lines": "not a list", "patient_ref": "MRN-LOGCHECK-2"}
    lines = [*scenario_lines(), json.dumps(secret), json.dumps(broken)]
    service = stack.start(DOCLOOP_LOG_LEVEL="DEBUG", DOCLOOP_HTTP_PORT=str(free_port()))
    await stack.publish(lines)
    await stack.wait_until_applied(VALID_EVENTS + 1)
    assert stack.stop(service) == 0

    log = stack.log_text()
    assert "MRN-" not in log
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is a JSON object
    batches = [e for e in entries if e["msg"] == "batch applied"]
    assert sum(sum(e["events"].values()) for e in batches) == VALID_EVENTS + 2  # the duplicate too
    assert sum(sum(e["dlq"].values()) for e in batches) == 6
    # The lines carry ids to trace by: events and the patterns that moved.
    assert batches[0]["first_event_id"] == "d-1001" and batches[-1]["last_event_id"] == "phi-1"
    assert any("d054b813-bfae-59e6-957a-23868b769e0a" in e["pattern_ids"] for e in batches)


async def test_the_read_api_on_the_running_service_needs_a_token(stack: Stack) -> None:
    stack.single_topic, stack.partitions = True, 1
    port = free_port()
    service = stack.start(DOCLOOP_HTTP_PORT=str(port), DOCLOOP_API_TOKENS="tok-1,tok-2")
    await stack.publish(scenario_lines())
    await stack.wait_until_applied(VALID_EVENTS)

    def fetch(path: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    status, headers, _ = await asyncio.to_thread(fetch, "/api/v1/patterns", None)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, _, body = await asyncio.to_thread(fetch, "/api/v1/patterns?status=open&limit=500", "tok-2")
    assert status == 200 and b"MRN-" not in body
    patterns = json.loads(body)["items"]
    assert patterns and all(p["status"] == "open" for p in patterns)
    status, _, body = await asyncio.to_thread(fetch, f"/api/v1/patterns/{patterns[0]['pattern_id']}", "tok-1")
    assert status == 200 and json.loads(body)["cases"]
    status, _, body = await asyncio.to_thread(fetch, "/api/v1/escalations?state=open", "tok-1")
    assert status == 200 and json.loads(body)["items"]
    status, headers, body = await asyncio.to_thread(fetch, "/report", "tok-1")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<svg" in body
    assert (await get(port, "/healthz"))[0] == 200 and (await get(port, "/metrics"))[0] == 200  # probes stay open
    assert stack.stop(service) == 0
