"""One record must never stop publishing (issue #10), on the real broker and PostgreSQL."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from engine.database import connect
from engine.store import tables as t
from tests.e2e.conftest import Stack
from tests.support.events import claim, npi

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

PROVIDER = npi("123456789")


async def test_a_rejected_record_near_the_broker_limit_is_replaced_and_publishing_goes_on(stack: Stack) -> None:
    stack.partitions = 1
    stack.start()
    huge = b'{"event_type": "claim.denied", "padding": "' + b"x" * 1_048_400 + b'"}'
    assert len(huge) > 1_048_400  # over DOCLOOP_MAX_EVENT_BYTES, under what the broker takes
    opened = [
        claim(
            f"ok-{i}",
            occurred_at=f"2026-02-{2 + 7 * i:02d}T09:00:00Z",
            service_date=f"2026-01-{5 + 7 * i:02d}",
            provider=PROVIDER,
        )
        for i in range(3)
    ]
    tombstone_key = PROVIDER.encode()
    await stack.publish([huge], key_for={0: PROVIDER.encode()})
    await _publish_tombstone(stack, tombstone_key)
    await stack.publish([json.dumps(e) for e in opened])
    await stack.wait_until_applied(3)

    dead = await stack.read("dlq", 2)
    small = [(k, v, h) for k, v, h in dead if "docloop-replaced" in h]
    assert len(small) == 1, [h for _, _, h in dead]
    key, value, headers = small[0]
    record = json.loads(value)
    assert record["original_bytes"] == len(huge)
    assert record["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert record["reason"].startswith("too large")
    assert key == PROVIDER.encode()
    tombstones = [(k, v, h) for k, v, h in dead if "docloop-tombstone" in h]
    assert len(tombstones) == 1 and tombstones[0][1] is None  # null, not empty bytes
    assert tombstones[0][2]["docloop-reason"].startswith(b"tombstone")

    # The rows after it were published: the pattern opened for the clinician and billing.
    notifications = await stack.read("notifications", 2)
    assert sorted(json.loads(v)["kind"] for _, v, _ in notifications) == ["pattern_opened", "pattern_opened"]

    database = connect(stack.database_url)
    async with database.connect() as conn:
        rows = (await conn.execute(select(t.outbox).where(t.outbox.c.stream == "dlq"))).all()
    await database.dispose()
    kept = [r for r in rows if r.kept_until is not None]
    assert len(kept) == 1 and kept[0].value == huge  # the original, kept for operators for a set time
    assert all(r.value is None for r in rows if r.kept_until is None)  # other rejected bytes: not kept
    assert stack.stop(stack.processes[0]) == 0
    assert "MRN" not in stack.log_text()


async def _publish_tombstone(stack: Stack, key: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic("claims"), None, key=key)
    finally:
        await producer.stop()


async def test_serve_declares_the_dlq_with_its_own_retention(stack: Stack) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    stack.extra_env = {"DOCLOOP_DLQ_RETENTION_HOURS": "48"}
    stack.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, stack.topic("dlq"))])
    finally:
        await admin.close()
    entries = {entry[0]: entry[1] for entry in described[0].resources[0][4]}
    assert entries["retention.ms"] == str(48 * 3_600_000)
    assert stack.stop(stack.processes[0]) == 0
