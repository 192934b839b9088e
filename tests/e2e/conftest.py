"""The running service on the real broker and the real PostgreSQL: helpers to start `docloop serve`,
publish events and read what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select

from engine.database import connect
from engine.store import tables as t
from schemas import InvalidEvent, decode_event
from tests.conftest import postgres_url, reset_postgres

ROOT = Path(__file__).resolve().parents[2]
EVENT_TOPIC = {
    "claim.denied": "claims",
    "note.signed": "notes",
    "feedback.acknowledged": "acks",
    "feedback.silence": "silences",
    "feedback.reviewed": "reviews",
}

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("DOCLOOP_TEST_KAFKA")
    if not bootstrap:
        pytest.skip("DOCLOOP_TEST_KAFKA is not set (run `make test`)")
    return bootstrap


STACK_PREFIXES: list[str] = []  # the topic prefixes of the stacks made in the test running now


@dataclass
class Stack:
    """One isolated Docloop deployment: its own topics, consumer group and (reset) database."""

    bootstrap: str
    database_url: str
    logs: Path
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    single_topic: bool = False
    partitions: int = 6
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        STACK_PREFIXES.append(self.prefix)

    def topic(self, name: str) -> str:
        if self.single_topic and name in ("claims", "notes", "acks", "reviews"):
            return f"{self.prefix}events"
        return f"{self.prefix}{name}"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DOCLOOP_KAFKA_BOOTSTRAP": self.bootstrap,
            "DOCLOOP_DATABASE_URL": self.database_url,
            "DOCLOOP_GROUP_ID": f"{self.prefix}group",
            "DOCLOOP_TOPIC_CLAIMS_DENIED": self.topic("claims"),
            "DOCLOOP_TOPIC_NOTES_SIGNED": self.topic("notes"),
            "DOCLOOP_TOPIC_ACKS": self.topic("acks"),
            "DOCLOOP_TOPIC_REVIEWS": self.topic("reviews"),
            "DOCLOOP_TOPIC_NOTIFICATIONS": self.topic("notifications"),
            "DOCLOOP_TOPIC_ESCALATIONS": self.topic("escalations"),
            "DOCLOOP_TOPIC_DLQ": self.topic("dlq"),
            "DOCLOOP_TOPIC_SILENCES": self.topic("silences"),
            "DOCLOOP_TOPIC_PARTITIONS": str(self.partitions),
            "DOCLOOP_BATCH_TIMEOUT_MS": "50",
            "DOCLOOP_HTTP_PORT": "0",  # tests that want the side port pick a free one
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DOCLOOP_CRASH_AT", None)
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, **overrides: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"serve-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve"],
            cwd=ROOT,
            env=self.env(**overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self._wait_ready(process, self.logs / f"serve-{len(self.processes) - 1}.log")
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
        """Publishing before serve has declared its topics would let the broker auto-create them (1 partition)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"docloop serving"' in log.read_text(errors="replace"):
                return
            if process.poll() is not None and "DOCLOOP_CRASH_AT" not in self.env():
                raise AssertionError(f"serve exited early:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"serve not ready in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 90) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=timeout)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("serve-*.log")))

    async def publish(self, lines: list[str] | list[bytes], key_for: dict[int, bytes] | None = None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for index, line in enumerate(lines):
                value = line.encode() if isinstance(line, str) else line
                topic, key = self.route(value)
                if key_for and index in key_for:
                    key = key_for[index]
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    def route(self, value: bytes) -> tuple[str, bytes | None]:
        try:
            event = json.loads(value)
            if event.get("event_type") == "feedback.silence":  # its own topic, keyed by the silence
                return self.topic("silences"), str(event.get("silence_id")).encode()
            # Acknowledgements are keyed by the pattern's provider NPI, so they meet that provider's other events.
            # One naming only a notification is keyed by who answers (a clinician's own NPI).
            who = (
                event.get("rendering_provider")
                or event.get("author")
                or event.get("pattern_key")
                or event.get("acknowledged_by")
                or {}
            )
            return self.topic(EVENT_TOPIC.get(event.get("event_type"), "claims")), str(
                who.get("npi") or who.get("provider_npi") or who.get("id")
            ).encode()
        except (ValueError, AttributeError, TypeError, RecursionError):  # hostile values go to claims
            return self.topic("claims"), b"unparseable"

    async def read(
        self, name: str, count: int, timeout: float = 60
    ) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        """Read at least `count` records from an output topic (from the beginning)."""
        consumer = AIOKafkaConsumer(
            self.topic(name),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        records: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < count and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for partition_records in batch.values():
                    records += [(r.key, r.value, dict(r.headers)) for r in partition_records]
            # Anything more that is already there (repeats after a crash, say).
            for partition_records in (await consumer.getmany(timeout_ms=1000)).values():
                records += [(r.key, r.value, dict(r.headers)) for r in partition_records]
        finally:
            await consumer.stop()
        return records

    async def wait_until_applied(self, events: int, timeout: float = 90) -> None:
        """Wait until `events` events are recorded, routed and the outbox is fully published."""
        database = connect(self.database_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    async with database.connect() as conn:
                        applied = await conn.scalar(select(func.count()).select_from(t.processed_events))
                        pending = await conn.scalar(
                            select(func.count()).select_from(t.outbox).where(t.outbox.c.published_at.is_(None))
                        )
                        pending = (pending or 0) + (
                            await conn.scalar(select(func.count()).select_from(t.routing_queue)) or 0
                        )
                    if applied >= events and pending == 0:
                        return
                except Exception:  # the schema may not exist yet while serve starts
                    pass
                await asyncio.sleep(0.3)
        finally:
            await database.dispose()
        raise AssertionError(f"not applied within {timeout}s; logs:\n{self.log_text()[-4000:]}")

    async def committed_lag(self) -> int:
        """Inbound records not yet covered by the group's committed offsets."""
        names = list(dict.fromkeys(self.topic(n) for n in ("claims", "notes", "acks", "reviews")))
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(names)
            committed = await admin.list_consumer_group_offsets(f"{self.prefix}group")
        finally:
            await admin.close()
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
        assert {tp.topic for tp in partitions} == set(names), "inbound topics missing"
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    url = postgres_url()
    await reset_postgres(url)
    STACK_PREFIXES.clear()
    deployment = Stack(kafka_bootstrap(), url, tmp_path)
    yield deployment
    for process in deployment.processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    await delete_topics(deployment.bootstrap, STACK_PREFIXES)


async def delete_topics(bootstrap: str, prefixes: list[str]) -> None:
    """Delete the test's topics: a local broker that `make test` runs again and again would otherwise hold
    thousands of partitions (one run of the suite makes about 2,000; at about 14,000 its 512 MB heap ran out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        names = [name for name in await admin.list_topics() if name.startswith(tuple(prefixes))]
        if names:
            await asyncio.wait_for(admin.delete_topics(names), timeout=30)
    except Exception as error:  # a test that stopped the broker on purpose, or a slow one: leave them
        print(f"topics of {prefixes} not deleted: {type(error).__name__}")
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


@pytest.fixture
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The scenario replayed as the single-topic, single-partition deployment of the tests that use it."""
    out = tmp_path_factory.mktemp("replay")
    one_topic = {f"DOCLOOP_TOPIC_{name}": "events" for name in ("CLAIMS_DENIED", "NOTES_SIGNED", "ACKS")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "replay",
            str(ROOT / "engine/examples/scenario.jsonl"),
            "--out",
            str(out),
            "--partitions",
            "1",
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, **one_topic},
    )
    as_serve_publishes(out, ROOT / "engine/examples/scenario.jsonl")
    yield out


def message_id(message: dict[str, Any]) -> str:
    return str(message.get("notification_id") or message.get("escalation_id") or message["digest_id"])


def as_serve_publishes(out: Path, events: Path) -> None:
    """Replay ends its input by flushing every digest still pending; serve sends those only when event time
    gets there. Drop, from a replay's notifications.jsonl, the digests due after the input's last event:
    what remains is what serve has published once every task is idle."""
    last = max(
        (e.occurred_at for line in events.read_bytes().splitlines() if (e := _event(line)) is not None),
        default=None,
    )
    path = out / "notifications.jsonl"
    kept = [
        line
        for line in path.read_text().splitlines()
        if '"digest_id"' not in line or last is None or datetime.fromisoformat(json.loads(line)["created_at"]) <= last
    ]
    path.write_text("".join(f"{line}\n" for line in kept))


def _event(line: bytes) -> Any:
    try:
        event = decode_event(line)
    except InvalidEvent:
        return None
    return event if event.occurred_at <= datetime.now(UTC) + timedelta(minutes=5) else None
