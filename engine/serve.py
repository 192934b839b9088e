"""`docloop serve`: the Kafka service. Consumers apply batches, the relay publishes the outbox, the ticker
keeps the event-time clock moving in a quiet hospital.

Exactly-once effects come from ordering, not from Kafka transactions:
1. a batch is applied and its outbound messages are written to the outbox in one database transaction;
2. only after that commit are the batch's offsets committed (AckPolicy.MANUAL); a crash in between
   redelivers the batch, whose events are then skipped as duplicates;
3. the relay publishes outbox rows in order and marks them only after the broker confirmed them; a crash
   in between republishes them with the same `docloop-message-id`, so consumers can drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.specification import AsyncAPI
from pydantic.json_schema import models_json_schema
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

import schemas
from engine.database import connect
from engine.faults import crash_point
from engine.http import HttpServer, Response
from engine.kafka_security import KafkaConnectError, KafkaSecurity, KafkaSecurityError, check_connection
from engine.logs import setup_logging
from engine.metrics import Metrics
from engine.service import BatchReport, Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t
from engine.store.migrate import upgrade

log = logging.getLogger("docloop.serve")

RELAY_LOCK = 0x646F636C6F6F70  # any constant: one relay at a time across replicas (PostgreSQL advisory lock)


LOGGED_PATTERN_IDS = 20  # per batch log line; the metrics carry the totals


class Stopping(Exception):
    """Raised inside a batch that is abandoned (unacknowledged) because the service is shutting down."""


def inbound_topics(settings: Settings) -> list[str]:
    topics = [settings.topic_claims_denied, settings.topic_notes_signed, settings.topic_acks, settings.topic_reviews]
    return list(dict.fromkeys(topics))  # one topic may carry all four event types


def outbound_topics(settings: Settings) -> dict[str, str]:
    return {
        "notifications": settings.topic_notifications,
        "escalations": settings.topic_escalations,
        "dlq": settings.topic_dlq,
    }


async def _records_as_is(message: tuple[ConsumerRecord[Any, Any], ...], original: Any) -> KafkaMessage:
    """Parse a batch without trusting its headers: a header that is not UTF-8 must not fail the whole batch."""

    def clean(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
        try:
            for _, value in record.headers:
                value.decode()
        except UnicodeDecodeError:
            return replace(record, headers=())
        return record

    parsed: KafkaMessage = await original(tuple(clean(r) for r in message))
    return parsed


async def _bodies_as_bytes(message: KafkaMessage, original: Any) -> list[bytes]:
    """Hand the handler the raw bytes: decoding and validation are ours, so bad input reaches the DLQ."""
    return [record.value or b"" for record in message.raw_message]


class Service:
    def __init__(self, settings: Settings, database: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.database = database or connect(settings.database_url)
        self.processor = Processor(settings, self.database)
        self.security = KafkaSecurity.from_settings(settings)  # reads the password file, if any, now
        self.metrics = Metrics()
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            graceful_timeout=60.0,
            client_id="docloop",
            logger=None,
            security=self.security.faststream(),
            middlewares=[self.metrics.faststream],
        )
        self.app = FastStream(
            self.broker,
            specification=AsyncAPI(
                title="Docloop",
                version="1",
                description="Feedback loop between clinical documentation and billing denials.",
            ),
            logger=None,
        )
        self.publishers = self._declare_publishers()
        self._declare_subscriber()
        self.stopping = asyncio.Event()
        self.relay_wake = asyncio.Event()
        self.totals = BatchReport()
        self.http: HttpServer | None = None

    # ---- wiring -------------------------------------------------------------------------------------

    def _declare_publishers(self) -> dict[str, DefaultPublisher]:
        s = self.settings
        return {
            "notifications": self.broker.publisher(
                s.topic_notifications,
                schema=schemas.FeedbackNotification,
                title="feedback notifications",
                description="Feedback for clinicians and billing staff; key: recipient id; "
                "header docloop-message-id (= notification_id) for dropping repeats.",
            ),
            "escalations": self.broker.publisher(
                s.topic_escalations,
                schema=schemas.EscalationRaised,
                title="escalations",
                description="Escalations to leadership; key: department; header docloop-message-id.",
            ),
            "dlq": self.broker.publisher(
                s.topic_dlq,
                schema=bytes,
                title="dead letters",
                description="Rejected input, bytes and key unchanged; header docloop-reason says why "
                "(never quoting field values).",
            ),
        }

    def _declare_subscriber(self) -> None:
        s = self.settings
        subscriber = self.broker.subscriber(
            *inbound_topics(s),
            group_id=s.group_id,
            batch=True,
            max_records=s.batch_max_records,
            batch_timeout_ms=s.batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            parser=_records_as_is,
            decoder=_bodies_as_bytes,
            title="inbound events",
            description="ClaimDenied (key: rendering provider NPI), NoteSigned (key: author NPI) and "
            "FeedbackAcknowledged (key: provider NPI or team id), FeedbackReviewed (key: provider NPI), UTF-8 JSON.",
        )

        async def on_events(body: list[bytes], message: KafkaMessage) -> None:
            await self.handle_batch(message)

        subscriber(on_events)

    # ---- consuming ----------------------------------------------------------------------------------

    async def handle_batch(self, message: KafkaMessage) -> None:
        records = message.raw_message
        assert isinstance(records, tuple)
        raws = [RawEvent(r.value or b"", r.key, f"{r.topic}/{r.partition}/{r.offset}") for r in records]
        started = time.perf_counter()
        try:
            report = await self._apply_until_stored(raws)
        except Stopping:
            log.info("shutdown: batch left unacknowledged for redelivery", extra={"records": len(raws)})
            return
        crash_point("after_commit")
        # The batch is durable: now, and only now, its offsets may be committed.
        await message.ack()
        self.totals.add(report)
        self.metrics.observe_batch(report, time.perf_counter() - started)
        self.relay_wake.set()
        log.info(
            "batch applied",
            extra={
                "records": len(raws),
                "events": dict(report.events),
                "dlq": dict(report.rejected),
                "notifications": sum(report.notifications.values()),
                "escalations": sum(report.escalations.values()),
                # Ids only (never contents): the batch's first and last event, and the patterns it moved.
                "first_event_id": report.first_event_id,
                "last_event_id": report.last_event_id,
                "pattern_ids": sorted(report.pattern_ids)[:LOGGED_PATTERN_IDS],
            },
        )

    async def _apply_until_stored(self, raws: Sequence[RawEvent]) -> BatchReport:
        """Apply a batch, waiting out store outages: consumption pauses, nothing is committed or dropped.

        A failure while the store answers is not an outage but an event the engine cannot apply (a bug):
        the batch is then applied event by event, and only the event that fails alone goes to the DLQ.
        Either way the handler returns only when every record is durably handled, because a handler that
        raised would let the next batch's acknowledgement commit past this one.
        """
        delay = 0.5
        while True:
            try:
                report, _ = await self.processor.apply_batch(raws)
                return report
            except Exception as error:
                if await self._store_answers():
                    return await self._isolate(raws, error)
                log.warning("store unavailable; retrying", extra={"retry_in_s": delay, "error": type(error).__name__})
            await self._pause(delay)
            delay = min(delay * 2, 30.0)

    async def _isolate(self, raws: Sequence[RawEvent], error: Exception) -> BatchReport:
        log.error("batch failed with the store up; applying it event by event", extra={"error": type(error).__name__})
        report = BatchReport()
        for raw in raws:
            if len(raws) > 1:
                report.add(await self._apply_until_stored([raw]))
                continue
            reason = f"engine error: {type(error).__name__} while applying this event"
            delay = 0.5
            while True:
                try:
                    await self.processor.dead_letter(raw, reason)
                    break
                except Exception as again:
                    log.warning("store unavailable; retrying", extra={"error": type(again).__name__})
                await self._pause(delay)
                delay = min(delay * 2, 30.0)
            report.rejected["engine_error"] += 1
        return report

    async def _store_answers(self) -> bool:
        try:
            async with self.database.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def _pause(self, seconds: float) -> None:
        if self.stopping.is_set():
            raise Stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        if self.stopping.is_set():
            raise Stopping

    # ---- the outbox relay ---------------------------------------------------------------------------

    async def relay_once(self) -> int:
        """Publish the oldest unpublished outbox rows in order; mark them once the broker confirmed all."""
        async with self.database.begin() as conn:
            lock = text("SELECT pg_try_advisory_xact_lock(:key)")
            if conn.dialect.name == "postgresql" and not await conn.scalar(lock, {"key": RELAY_LOCK}):
                return 0  # another replica is relaying
            rows = (
                await conn.execute(
                    select(t.outbox)
                    .where(t.outbox.c.published_at.is_(None))
                    .order_by(t.outbox.c.seq)
                    .limit(self.settings.relay_batch_size)
                )
            ).all()
            if not rows:
                return 0
            confirmations = []
            for row in rows:
                headers = {"docloop-message-id": row.message_id, "content-type": "application/json"}
                if row.stream == "dlq":
                    headers = {"docloop-message-id": row.message_id, "docloop-reason": row.reason or ""}
                confirmations.append(
                    await self.publishers[row.stream].publish(row.value, key=row.key, headers=headers, no_confirm=True)
                )
            await asyncio.gather(*confirmations)
            crash_point("relay_before_mark")
            await conn.execute(
                update(t.outbox)
                .where(t.outbox.c.seq.in_([row.seq for row in rows]))
                .values(published_at=datetime.now(UTC))
            )
        return len(rows)

    async def run_relay(self) -> None:
        idle = self.settings.relay_idle_ms / 1000
        wait = idle
        while not self.stopping.is_set():
            try:
                published = await self.relay_once()
                wait = idle
            except Exception as error:  # a relay that died would silently stop all output
                # Back off, but a batch committed meanwhile (the store is back) wakes the relay at once.
                wait = min(max(wait * 2, 0.5), 5.0)
                log.warning("relay: store unavailable", extra={"retry_in_s": wait, "error": type(error).__name__})
                published = 0
            if published == 0:
                self.relay_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.relay_wake.wait(), timeout=wait)

    # ---- the clock ticker ---------------------------------------------------------------------------

    async def run_ticker(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.tick_seconds)
            if self.stopping.is_set():
                return
            try:
                report, rows = await self.processor.advance_idle_clock()
            except Exception as error:
                log.warning("ticker: store unavailable", extra={"error": type(error).__name__})
                continue
            if rows:
                self.totals.add(report)
                self.metrics.record(report)
                self.relay_wake.set()
                log.info("idle clock advanced", extra={"messages": len(rows)})

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def ensure_topics(self) -> None:
        """Declare every topic with the configured partitions (auto-creation would make just one)."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id="docloop-admin",
            **self.security.aiokafka_kwargs(),
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [*inbound_topics(self.settings), *outbound_topics(self.settings).values()]
            missing = [name for name in dict.fromkeys(wanted) if name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(name, self.settings.topic_partitions, self.settings.topic_replication)
                        for name in missing
                    ]
                )
                log.info("topics created", extra={"topics": missing, "partitions": self.settings.topic_partitions})
        finally:
            await admin.close()

    # ---- the HTTP side port: metrics and probes ---------------------------------------------------------

    async def start_http(self) -> None:
        s = self.settings
        if s.http_port == 0:
            return
        server = HttpServer(
            s.http_host,
            s.http_port,
            {"/metrics": self.metrics_endpoint, "/healthz": self.healthz, "/readyz": self.readyz},
        )
        try:
            await server.start()
        except OSError as error:
            # Not fatal: the engine's work matters more than its probes, and a probe that cannot connect
            # is itself the alarm. (Several replicas on one host need distinct DOCLOOP_HTTP_PORTs.)
            log.error(
                "http: cannot listen; metrics and probes disabled",
                extra={"host": s.http_host, "port": s.http_port, "error": type(error).__name__},
            )
            return
        self.http = server
        log.info("http: listening", extra={"host": s.http_host, "port": server.port})

    async def stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None

    async def metrics_endpoint(self) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(200, body, content_type)

    async def healthz(self) -> Response:
        return Response.json(200, {"status": "alive"})

    async def readyz(self) -> Response:
        """Ready when the database answers `SELECT 1` and Kafka answers a metadata request, both in time."""
        timeout = self.settings.readiness_timeout_seconds

        async def database() -> str:
            try:
                async with asyncio.timeout(timeout):
                    async with self.database.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                return "ok"
            except Exception as error:  # the class only: driver messages can name hosts and users
                return f"failed: {type(error).__name__}"

        async def kafka() -> str:
            try:
                return "ok" if await self.broker.ping(timeout) else "failed: no metadata response"
            except Exception as error:
                return f"failed: {type(error).__name__}"

        checks = dict(zip(("database", "kafka"), await asyncio.gather(database(), kafka()), strict=True))
        ready = all(result == "ok" for result in checks.values())
        return Response.json(200 if ready else 503, {"ready": ready, "checks": checks})

    async def run_metrics_refresh(self) -> None:
        """Keep the gauges read from the database (open patterns, outbox backlog) fresh."""
        failing = False
        while not self.stopping.is_set():
            try:
                await self.metrics.refresh(self.database)
                failing = False
            except Exception as error:
                self.metrics.refresh_failures.inc()
                if not failing:  # once per outage, not every pass
                    log.warning("metrics: store unavailable", extra={"error": type(error).__name__})
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.metrics_refresh_seconds)

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        await self.start_http()  # /healthz answers during start-up; /readyz only once Kafka is connected
        try:
            await self._serve()
        finally:
            await self.stop_http()

    async def _serve(self) -> None:
        s = self.settings
        await check_connection(s.kafka_bootstrap, self.security, s.kafka_connect_timeout_seconds)
        await self.ensure_topics()
        await self.broker.start()
        tasks = [asyncio.create_task(self.run_relay()), asyncio.create_task(self.run_ticker())]
        if self.http is not None:
            tasks.append(asyncio.create_task(self.run_metrics_refresh()))
        log.info(
            "docloop serving",
            extra={
                "topics": inbound_topics(s),
                "group_id": s.group_id,
                "kafka_security": self.security.describe(),
                "http_port": self.http.port if self.http else None,
            },
        )
        try:
            await self.stopping.wait()
        finally:
            log.info("shutting down: draining the current batch")
            self.stopping.set()
            for subscriber in self.broker.subscribers:
                await subscriber.stop()  # waits for the batch in hand, up to graceful_timeout
            await asyncio.gather(*tasks, return_exceptions=True)
            while await self.relay_once():  # publish what the last batches committed
                pass
            await self.broker.stop()
            await self.database.dispose()
            log.info("stopped", extra={"events": dict(self.totals.events)})


def asyncapi_document() -> Any:
    """The AsyncAPI document of the service, generated from its declared subscribers and publishers.

    The handler takes raw bytes (so that invalid input reaches the DLQ instead of failing the batch), so
    FastStream cannot see the inbound payload types: they are filled in from the contracts themselves.
    """
    service = Service(Settings.model_construct(), database=None)  # defaults, whatever the environment says
    document: dict[str, Any] = service.app.schema.to_specification().to_jsonable()
    components = document["components"]["schemas"]
    _, definitions = models_json_schema(
        [
            (model, "validation")
            for model in (
                schemas.ClaimDenied,
                schemas.NoteSigned,
                schemas.FeedbackAcknowledged,
                schemas.FeedbackReviewed,
            )
        ],
        ref_template="#/components/schemas/{model}",
    )
    components.update(definitions["$defs"])
    components["inbound events:Message:Payload"] = {
        "title": "Inbound event",
        "oneOf": [
            {"$ref": f"#/components/schemas/{name}"}
            for name in ("ClaimDenied", "NoteSigned", "FeedbackAcknowledged", "FeedbackReviewed")
        ],
    }
    return document


def run_service(settings: Settings) -> int:
    setup_logging(settings.log_level)
    try:
        service = Service(settings)
    except KafkaSecurityError as error:
        log.error(f"kafka security settings: {error}")
        return 2
    if settings.migrate_on_start:
        upgrade(settings.database_url)
    try:
        asyncio.run(service.run())
    except KafkaConnectError as error:
        log.error(str(error), extra={"bootstrap": settings.kafka_bootstrap})
        return 3
    return 0
