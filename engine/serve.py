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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.publisher.usecase import DefaultPublisher
from faststream.specification import AsyncAPI
from pydantic.json_schema import models_json_schema
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

import schemas
from engine.api import ApiTokenError, ReadApi, load_api_tokens
from engine.clocks import ClockHistory
from engine.consumer import BrokerOffsets, TaskAssignment, TaskRunner, tasks_behind
from engine.database import DatabaseUrlError, check_database_url, connect, masked
from engine.faults import crash_point
from engine.http import CachedCheck, SidePort, build_app, json_response
from engine.kafka_security import KafkaConnectError, KafkaSecurity, KafkaSecurityError, check_connection
from engine.logs import setup_logging
from engine.metrics import Metrics
from engine.relay import Relay
from engine.retention import prune
from engine.runtime import tune_gc
from engine.service import BatchReport, Processor, RawEvent, StoreUnavailable, TaskBatch, reason_kind
from engine.settings import Settings
from engine.store import repository
from engine.store.migrate import upgrade
from engine.store.repository import STAGE_PASS_LIMIT
from engine.store.routing import PASS_LIMIT as ROUTING_PASS_LIMIT

log = logging.getLogger("docloop.serve")

LOGGED_PATTERN_IDS = 20  # per batch log line; the metrics carry the totals


async def partition_counts(
    describe: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
    topics: list[str],
    wait_seconds: float = 30.0,
) -> dict[str, int]:
    """Each topic's partition count, as the brokers' metadata gives it. A topic created a moment ago may be
    described with an error (no leader yet) and no partitions: that is asked again, up to wait_seconds, rather
    than taken for a topic with the wrong count."""
    deadline = time.monotonic() + wait_seconds
    while True:
        described = await describe(topics)
        settling = [d for d in described if d.get("error_code", 0) != 0 or not d["partitions"]]
        if not settling or time.monotonic() >= deadline:
            return {d["topic"]: len(d["partitions"]) for d in described}
        await asyncio.sleep(0.2)


async def timestamp_types(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, str]:
    """Each topic's `message.timestamp.type` (CreateTime or LogAppendTime); topics the broker does not
    describe are left out. Best effort: an ACL that forbids DescribeConfigs leaves the answer empty."""
    wanted = [ConfigResource(ConfigResourceType.TOPIC, name, {"message.timestamp.type": None}) for name in topics]
    try:
        responses = await admin.describe_configs(wanted)
    except Exception as error:
        log.info("topic configs unknown", extra={"error": type(error).__name__})
        return {}
    found = {}
    for response in responses:
        for error_code, _, _, name, entries in response.resources:
            for entry in entries if error_code == 0 else []:
                if entry[0] == "message.timestamp.type":
                    found[name] = entry[1]
    return found


class PartitioningError(Exception):
    """The inbound topics (or the store) are partitioned otherwise than DOCLOOP_TOPIC_PARTITIONS says."""


class StoreUnreachable(Exception):
    """The store did not answer within DOCLOOP_START_TIMEOUT_SECONDS at start."""

    def __init__(self, attempts: int, error: str) -> None:
        super().__init__(f"database unreachable at start after {attempts} attempts ({error}); giving up")
        self.attempts, self.error = attempts, error


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
        self.database = database or connect(settings.database_url, settings.database_pool_size)
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
        self.relay = Relay(settings, self.database, self.publishers, self.metrics)  # type: ignore[arg-type]
        self.offsets = BrokerOffsets(settings.kafka_bootstrap, **self.security.aiokafka_kwargs())
        self.clock_history = ClockHistory(settings.task_idle_ms / 1000)  # the watermark's settled time
        self.tasks = TaskRunner(
            settings,
            self.processor,
            inbound_topics(settings),
            self._apply_until_stored,
            self._applied,
            lambda: self.subscriber.consumer,
            self.offsets,
            self.metrics,
            self.clock_history,
        )
        self._declare_subscriber()
        self.stage_wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.relay_wake = asyncio.Event()
        self.totals = BatchReport()
        self.http: SidePort | None = None
        self.api_tokens = load_api_tokens(settings)  # reads the token file, if any, now
        self.database_check = CachedCheck(self._check_database, settings.readiness_cache_seconds)
        self.kafka_check = CachedCheck(self._check_kafka, settings.readiness_cache_seconds)

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
            # Up to a transaction's worth per task: with one transaction's worth shared by all tasks, each task
            # applied a sixth of DOCLOOP_BATCH_MAX_RECORDS at a time (6 tasks), at 10% more CPU per event.
            max_records=s.batch_max_records * s.topic_partitions,
            batch_timeout_ms=s.batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            # Partition p of every inbound topic to the same member: a task's inputs stay together.
            partition_assignment_strategy=(RangePartitionAssignor,),
            listener=TaskAssignment(self.tasks),
            parser=_records_as_is,
            decoder=_bodies_as_bytes,
            title="inbound events",
            description="ClaimDenied (key: rendering provider NPI), NoteSigned (key: author NPI) and "
            "FeedbackAcknowledged and FeedbackReviewed (key: the pattern's provider NPI, which every notification "
            "carries), UTF-8 JSON. All inbound topics must have the same partition count: partition p of each is "
            "task p, one provider's events meet in one task.",
        )
        self.subscriber = subscriber

        async def on_events(body: list[bytes], message: KafkaMessage) -> None:
            await self.handle_batch(message)

        subscriber(on_events)

        # Silences are few and not about one provider: their own consumer group, kept in the store until the
        # routing stage's clock reaches them (it applies them at their event time, as replay does).
        silences = self.broker.subscriber(
            s.topic_silences,
            group_id=f"{s.group_id}-silences",
            batch=True,
            max_records=100,
            batch_timeout_ms=s.batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            parser=_records_as_is,
            decoder=_bodies_as_bytes,
            title="silences",
            description="FeedbackSilence (key: silence_id), UTF-8 JSON: holds matching notifications and "
            "escalations between starts_at and ends_at; action `expire` ends one early.",
        )

        async def on_silences(body: list[bytes], message: KafkaMessage) -> None:
            records = message.raw_message
            assert isinstance(records, tuple)
            for r in records:
                raw = RawEvent(r.value, r.key, f"{r.topic}/{r.partition}/{r.offset}")
                reason = await self.processor.record_silence(raw)
                if reason is not None:
                    self.metrics.dlq.labels(reason=reason_kind(reason)).inc()
                    self.relay_wake.set()
            await message.ack()
            self.stage_wake.set()

        silences(on_silences)

    # ---- consuming ----------------------------------------------------------------------------------

    async def handle_batch(self, message: KafkaMessage) -> None:
        """Hand the records to their tasks; each applies what it may (engine/consumer.py). Returns only when
        what could be applied is durably stored, so a store outage pauses consumption."""
        records = message.raw_message
        assert isinstance(records, tuple)
        try:
            await self.tasks.add(records)
        except Stopping:
            log.info("shutdown: records left unapplied for redelivery", extra={"records": len(records)})

    def _applied(self, report: BatchReport, records: int, seconds: float) -> None:
        crash_point("after_commit")
        self.totals.add(report)
        self.metrics.observe_batch(report, seconds)
        if report.rejected:  # only the DLQ's rows go straight to the outbox; the stages route the rest
            self.relay_wake.set()
        self.stage_wake.set()  # the watermark may have moved: the stages route what it passed
        log.info(
            "batch applied",
            extra={
                "records": records,
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

    async def _apply_until_stored(self, batches: Sequence[TaskBatch]) -> BatchReport:
        """Apply a batch, waiting out store outages: consumption pauses, nothing is committed or dropped.

        An event the engine cannot apply while the store answers goes alone to the DLQ (Processor.apply).
        The handler returns only when every record is durably handled, because a handler that raised would
        let the next batch's acknowledgement commit past this one.
        """
        delay = 0.5
        while True:
            try:
                return await self.processor.apply_together(batches)
            except StoreUnavailable as error:
                cause = error.__cause__ or error
                log.warning("store unavailable; retrying", extra={"retry_in_s": delay, "error": type(cause).__name__})
            await self._pause(delay)
            delay = min(delay * 2, 30.0)

    async def _pause(self, seconds: float) -> None:
        if self.stopping.is_set():
            raise Stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        if self.stopping.is_set():
            raise Stopping

    # ---- the outbox relay (engine/relay.py) and retention (engine/retention.py) --------------------

    async def relay_once(self) -> int:
        return await self.relay.relay_once()

    async def run_relay(self) -> None:
        await self.relay.run(self.stopping, self.relay_wake)

    async def run_pruning(self) -> None:
        while not self.stopping.is_set():
            try:
                await prune(self.database, self.settings)
            except Exception as error:
                log.warning("pruning failed; will try again", extra={"error": type(error).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.prune_interval_minutes * 60)

    # ---- the clock ticker ---------------------------------------------------------------------------

    async def run_ticker(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.tick_seconds)
            if self.stopping.is_set():
                return
            # Each task's clock on its own, by the replica that owns the task (another replica's task is
            # advanced by its owner: taking its lock here would only make the owner's batches wait). Not a task
            # with input in the broker it has not applied (the backlog after an outage longer than
            # DOCLOOP_IDLE_ADVANCE_MINUTES): its clock follows that input, whose acknowledgements may stop the
            # very timers a tick would fire. If the broker does not say, no task is advanced this time.
            try:
                behind = await self.tasks_behind()
            except Exception as error:
                log.warning("ticker: end offsets unknown; no clock advanced", extra={"error": type(error).__name__})
                continue
            for task in sorted(self.tasks.owned - behind):
                try:
                    report, rows = await self.processor.advance_idle_clock(task)
                except Exception as error:
                    log.warning("ticker: store unavailable", extra={"error": type(error).__name__})
                    break
                self.stage_wake.set()
                if rows:  # queued for the routing stage, woken above
                    self.totals.add(report)
                    self.metrics.record(report)
                    log.info("idle clock advanced", extra={"task": task, "messages": len(rows)})

    async def tasks_behind(self, ends: dict[TopicPartition, int] | None = None) -> set[int]:
        """Tasks with input in the broker that is not applied yet (engine/consumer.py tasks_behind)."""
        return await tasks_behind(
            self.offsets, self.database, inbound_topics(self.settings), self.settings.topic_partitions, ends
        )

    async def run_department_stage(self) -> None:
        """Apply the department facts every task has passed (engine/domain/departments.py); woken by batches
        that recorded facts, and every second (a task going idle moves the watermark too)."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stage_wake.wait(), timeout=1.0)
            self.stage_wake.clear()
            if self.stopping.is_set():
                return
            try:
                consumer = self.subscriber.consumer
                if consumer is None:
                    continue
                asked_at = time.monotonic()  # (what settled before this, the broker's answer covers)
                ends: dict[TopicPartition, int] = {}
                behind = await self.tasks_behind(ends)
                held = await self.tasks.held_back(behind, ends)
                while True:
                    report = await self.processor.run_department_stage(
                        behind=behind, history=self.clock_history, asked_at=asked_at, held=held
                    )
                    self.totals.add(report)
                    self.metrics.record(report)
                    if report.deliveries:
                        self.relay_wake.set()
                    if report.escalations:
                        log.info("department stage", extra={"escalations": dict(report.escalations)})
                    # Again only if the pass was cut short (it takes everything below the watermark, up to
                    # its limits); the next batch applied wakes the stage anyway.
                    if report.facts < STAGE_PASS_LIMIT and report.routed < ROUTING_PASS_LIMIT:
                        break
            except Exception as error:
                if not self.stopping.is_set():  # the consumer stops under it on shutdown: nothing to say then
                    log.warning("department stage: pass failed; will retry", extra={"error": type(error).__name__})

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
            wanted = [
                *inbound_topics(self.settings),
                self.settings.topic_silences,
                *outbound_topics(self.settings).values(),
            ]
            missing = [name for name in dict.fromkeys(wanted) if name not in existing]
            inbound = inbound_topics(self.settings)
            configs: dict[str, dict[str, str]] = {
                # The DLQ keeps rejected bytes unchanged, so it may hold PHI: it gets its own, short retention.
                self.settings.topic_dlq: {"retention.ms": str(self.settings.dlq_retention_hours * 3_600_000)},
                # Inputs stamped by the broker: a task's idle allowance runs from there (engine/consumer.py).
                **{name: {"message.timestamp.type": "LogAppendTime"} for name in inbound},
            }
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            self.settings.topic_partitions,
                            self.settings.topic_replication,
                            topic_configs=configs.get(name, {}),
                        )
                        for name in missing
                    ]
                )
                log.info("topics created", extra={"topics": missing, "partitions": self.settings.topic_partitions})
            producer_stamped = sorted(
                name for name, kind in (await timestamp_types(admin, inbound)).items() if kind != "LogAppendTime"
            )
            if producer_stamped:
                log.info(
                    "inputs carry the producer's timestamps: their idle allowance runs from when serve reads them, "
                    "not from when the broker got them (set message.timestamp.type=LogAppendTime on them)",
                    extra={"topics": producer_stamped},
                )
        finally:
            await admin.close()

    async def check_partitioning(self) -> None:
        """Co-partitioned inputs or nothing: every inbound topic with DOCLOOP_TOPIC_PARTITIONS partitions, and
        a store whose task numbers were computed for that count."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id="docloop-admin",
            **self.security.aiokafka_kwargs(),
        )
        await admin.start()
        try:
            counts = await partition_counts(admin.describe_topics, inbound_topics(self.settings))
        finally:
            await admin.close()
        expected = self.settings.topic_partitions
        if any(count != expected for count in counts.values()):
            found = ", ".join(f"{topic} has {count}" for topic, count in sorted(counts.items()))
            raise PartitioningError(
                f"inbound topics must all have DOCLOOP_TOPIC_PARTITIONS={expected} partitions (one provider's "
                f"events meet in one task only then): {found}"
            )
        async with self.database.begin() as conn:
            stored = await repository.claim_partitions(conn, expected)
        if stored != expected:
            raise PartitioningError(
                f"the store's tasks were computed for {stored} partitions, DOCLOOP_TOPIC_PARTITIONS is {expected}"
            )

    # ---- the HTTP side port: metrics, probes and the read API ----------------------------------------------

    def http_app(self) -> Starlette:
        api_routes = ReadApi(self.database, self.api_tokens).routes() if self.api_tokens else []
        return build_app(self.metrics_endpoint, self.healthz, self.readyz, api_routes)

    async def start_http(self) -> None:
        s = self.settings
        if s.http_port == 0:
            return
        server = SidePort(self.http_app(), s.http_host, s.http_port)
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
        log.info(
            "http: listening",
            extra={"host": s.http_host, "port": server.port, "api": "on" if self.api_tokens else "off"},
        )

    async def stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()
            self.http = None

    async def metrics_endpoint(self, request: Request) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    async def healthz(self, request: Request) -> Response:
        return json_response(200, {"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        """Ready when the database answers `SELECT 1` and Kafka answers a metadata request, both in time, and
        the relay is not stuck.

        Each check's result is reused for DOCLOOP_READINESS_CACHE_SECONDS and runs once at a time (CachedCheck),
        so a burst of probes costs one query and one broker request, not one per call."""
        results = await asyncio.gather(self.database_check.get(), self.kafka_check.get())
        checks = dict(zip(("database", "kafka"), results, strict=True))
        checks["relay"] = f"stuck for {self.relay.stuck_for():.0f} s" if self.relay.is_stuck() else "ok"
        ready = all(result == "ok" for result in checks.values())
        return json_response(200 if ready else 503, {"ready": ready, "checks": checks})

    async def _check_database(self) -> str:
        try:
            async with asyncio.timeout(self.settings.readiness_timeout_seconds):
                async with self.database.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return "ok"
        except Exception as error:  # the class only: driver messages can name hosts and users
            return f"failed: {type(error).__name__}"

    async def _check_kafka(self) -> str:
        try:
            return (
                "ok"
                if await self.broker.ping(self.settings.readiness_timeout_seconds)
                else "failed: no metadata response"
            )
        except Exception as error:
            return f"failed: {type(error).__name__}"

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
        await self.start_http()  # /healthz answers during start-up; /readyz only once the store and Kafka answer
        try:
            if await self.wait_for_store():
                await self._serve()
            else:
                await self.database.dispose()
        finally:
            await self.stop_http()

    async def wait_for_store(self) -> bool:
        """Reach the store (and migrate it, when DOCLOOP_MIGRATE_ON_START) before anything else, retrying with
        backoff like an outage while running. False when asked to stop meanwhile.

        It gives up after DOCLOOP_START_TIMEOUT_SECONDS (0: never) with StoreUnreachable, so that an orchestrator
        sees a failing start (a restarting pod, an alert) instead of a pod that waits silently forever; its
        liveness probe stays green meanwhile, because the process itself is fine.
        """
        s = self.settings
        limit = s.start_timeout_seconds
        deadline = time.monotonic() + limit if limit > 0 else None
        delay, attempts = 0.5, 0
        while True:
            attempts += 1
            try:
                if s.migrate_on_start:
                    await asyncio.to_thread(upgrade, s.database_url)
                else:
                    async with self.database.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                if attempts > 1:
                    log.info("store reachable", extra={"attempts": attempts})
                return True
            except Exception as error:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise StoreUnreachable(attempts, type(error).__name__) from None
                log.warning(
                    "store unavailable at start; retrying",
                    extra={"retry_in_s": delay, "attempt": attempts, "error": type(error).__name__},
                )
            try:
                await self._pause(delay)
            except Stopping:
                log.info("shutdown requested while waiting for the store")
                return False
            delay = min(delay * 2, 30.0)

    async def _serve(self) -> None:
        s = self.settings
        await check_connection(s.kafka_bootstrap, self.security, s.kafka_connect_timeout_seconds)
        await self.ensure_topics()
        await self.check_partitioning()
        await self.broker.start()
        await self.processor.load_phi_key()
        tasks = [
            asyncio.create_task(self.run_relay()),
            asyncio.create_task(self.run_ticker()),
            asyncio.create_task(self.run_pruning()),
            asyncio.create_task(self.tasks.run(self.stopping)),
            asyncio.create_task(self.run_department_stage()),
        ]
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
            await self.offsets.close()
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
    """Run serve until SIGTERM. Exit codes: 0 stopped, 2 bad settings, 3 Kafka or the store unreachable."""
    setup_logging(settings.log_level)
    tune_gc()
    try:
        check_database_url(settings.database_url)
        service = Service(settings)
    except DatabaseUrlError as error:
        log.error(str(error))
        return 2
    except KafkaSecurityError as error:
        log.error(f"kafka security settings: {error}")
        return 2
    except ApiTokenError as error:
        log.error(str(error))
        return 2
    try:
        asyncio.run(service.run())
    except KafkaConnectError as error:
        log.error(str(error), extra={"bootstrap": settings.kafka_bootstrap})
        return 3
    except PartitioningError as error:
        log.error(str(error))
        return 2
    except StoreUnreachable as error:
        log.error(str(error), extra={"database": masked(settings.database_url)})
        return 3
    return 0
