"""Prometheus metrics of `docloop serve`, served on the HTTP side port at /metrics.

Two families share one registry:
- FastStream's Kafka middleware (`faststream_*`): messages received and published per topic, sizes,
  processing time and errors, as the framework sees them;
- Docloop's own (`docloop_*`): what the engine made of the events, from the BatchReport of every applied
  batch (and of every idle-clock advance), plus gauges read from the database every few seconds.

Labels are bounded vocabularies (event types, outcomes, DLQ reason kinds, root causes, notification kinds,
audiences, escalation levels and reasons): never an id, never anything taken from an event's content.
"""

from __future__ import annotations

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.model import PatternStatus
from engine.service import BatchReport
from engine.store import tables as t
from schemas import RootCause

BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "docloop_events_total",
            "Inbound events by event type and outcome (applied, ignored, duplicate).",
            ["event_type", "result"],
            registry=r,
        )
        self.dlq = Counter(
            "docloop_dlq_total", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.notifications = Counter(
            "docloop_notifications_total",
            "Feedback notifications queued, by kind and audience.",
            ["kind", "audience"],
            registry=r,
        )
        self.escalations = Counter(
            "docloop_escalations_total", "Escalations raised, by level and reason.", ["level", "reason"], registry=r
        )
        self.routed = Counter(
            "docloop_messages_routed_total",
            "Messages the routing stage decided, by delivery (send, digest, held; digest_sent: a digest itself) "
            "and audience.",
            ["delivery", "audience"],
            registry=r,
        )
        self.open_patterns = Gauge(
            "docloop_open_patterns",
            "Patterns currently open (feedback given), by root cause.",
            ["root_cause"],
            registry=r,
        )
        self.quarantined = Counter(
            "docloop_patterns_quarantined_total",
            "Patterns whose timers were stopped by a fault while firing one (see the log line with its id).",
            registry=r,
        )
        self.outbox_parked = Counter(
            "docloop_outbox_parked_total",
            "Outbox rows the relay set aside because publishing them failed in a way retrying cannot fix.",
            ["stream", "error"],
            registry=r,
        )
        self.dlq_replaced = Counter(
            "docloop_dlq_replaced_total",
            "Rejected records too large to republish whole, published as a small record naming the original.",
            registry=r,
        )
        self.relay_failures = Counter(
            "docloop_relay_failures_total",
            "Relay passes that failed (store or broker), by error class.",
            ["error"],
            registry=r,
        )
        self.relay_stuck = Gauge(
            "docloop_relay_stuck",
            "1 while the oldest unpublished outbox row has waited longer than DOCLOOP_RELAY_STUCK_SECONDS.",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "docloop_outbox_backlog", "Outbox rows not yet published to Kafka (all replicas).", registry=r
        )
        self.batch_seconds = Histogram(
            "docloop_batch_duration_seconds",
            "Time to apply one inbound batch and commit it, store outages included.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.not_waited = Counter(
            "docloop_task_records_not_waited_for_total",
            "Records a task applied without waiting any longer for a quiet input (DOCLOOP_TASK_IDLE_MS ran out), "
            "by that input's topic. While it grows, serve may differ from replay: the allowance is shorter than "
            "the lag between your topics.",
            ["input"],
            registry=r,
        )
        self.held_records = Gauge(
            "docloop_task_held_records",
            "Records this replica's tasks hold back while they wait for a quiet input.",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "docloop_task_paused_partitions",
            "Inbound partitions this replica paused because their task holds "
            "DOCLOOP_BUFFERED_RECORDS_PER_PARTITION of their records.",
            registry=r,
        )
        self.refresh_failures = Counter(
            "docloop_metrics_refresh_failures_total",
            "Failed refreshes of the gauges read from the database.",
            registry=r,
        )
        for cause in RootCause:  # a root cause with no open pattern reads 0, not "absent"
            self.open_patterns.labels(root_cause=cause.value).set(0)
        self.faststream = KafkaPrometheusMiddleware(registry=r, app_name="docloop")

    def record(self, report: BatchReport) -> None:
        """Count what one batch (or one idle-clock advance) did."""
        for key, count in report.events.items():
            event_type, _, result = key.partition(":")
            self.events.labels(event_type=event_type, result=result).inc(count)
        for reason, count in report.rejected.items():
            self.dlq.labels(reason=reason).inc(count)
        for key, count in report.notifications.items():
            kind, _, audience = key.partition(":")
            self.notifications.labels(kind=kind, audience=audience).inc(count)
        for key, count in report.escalations.items():
            level, _, reason = key.partition(":")
            self.escalations.labels(level=level, reason=reason).inc(count)
        for key, count in report.deliveries.items():
            delivery, _, audience = key.partition(":")
            self.routed.labels(delivery=delivery, audience=audience).inc(count)
        if report.quarantined:
            self.quarantined.inc(len(report.quarantined))

    def observe_batch(self, report: BatchReport, seconds: float) -> None:
        self.record(report)
        self.batch_seconds.observe(seconds)

    async def refresh(self, database: AsyncEngine) -> None:
        """Read the gauges from the store: one GROUP BY over open patterns, one count of unpublished rows."""
        async with database.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.patterns.c.root_cause, func.count())
                    .where(t.patterns.c.status == PatternStatus.OPEN.value)
                    .group_by(t.patterns.c.root_cause)
                )
            ).all()
            backlog = await conn.scalar(
                select(func.count()).select_from(t.outbox).where(t.outbox.c.published_at.is_(None))
            )
        counts = {str(cause): int(count) for cause, count in rows}
        for cause in {c.value for c in RootCause} | counts.keys():
            self.open_patterns.labels(root_cause=cause).set(counts.get(cause, 0))
        self.outbox_backlog.set(int(backlog or 0))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
