"""Configuration: every DOCLOOP_ environment variable, with its default and meaning.

`python -m engine.settings` prints the configuration reference (a Markdown table) that README.md carries
between the markers below; `python -m engine.settings --write README.md` rewrites that section in place.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Sequence
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.domain.rules import Thresholds

REFERENCE_BEGIN = "<!-- settings:begin -->"
REFERENCE_END = "<!-- settings:end -->"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCLOOP_", extra="ignore")

    # Store and broker
    database_url: str = Field(
        "sqlite+aiosqlite:///./docloop.db",
        description="SQLAlchemy async URL of the store (production: `postgresql+asyncpg://user:password@host/db`)",
    )
    database_pool_size: int = Field(
        10,
        ge=5,
        description="PostgreSQL connections serve keeps open (plus up to 5 more for bursts); tasks apply up to "
        "this less 4 batches at once (the other 4 serve the stages, the relay and the probes)",
    )
    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated")
    group_id: str = Field("docloop", description="Kafka consumer group of the engine replicas")
    topic_claims_denied: str = Field("claims.denied.v1", description="inbound topic of ClaimDenied events")
    topic_notes_signed: str = Field("notes.signed.v1", description="inbound topic of NoteSigned events")
    topic_acks: str = Field("feedback.acks.v1", description="inbound topic of FeedbackAcknowledged events")
    topic_reviews: str = Field("feedback.reviewed.v1", description="inbound topic of FeedbackReviewed events")
    topic_notifications: str = Field(
        "feedback.notifications.v1", description="outbound topic of FeedbackNotification messages"
    )
    topic_escalations: str = Field("feedback.escalations.v1", description="outbound topic of EscalationRaised messages")
    topic_silences: str = Field(
        "feedback.silence.v1", description="inbound topic of FeedbackSilence events (read by the routing stage)"
    )
    topic_dlq: str = Field("docloop.dlq.v1", description="dead-letter topic: rejected input, bytes unchanged")
    topic_partitions: int = Field(6, ge=1, description="partitions of the topics the engine declares")
    topic_replication: int = Field(1, ge=1, description="replication factor of the topics the engine declares")

    # Kafka security
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how serve and ingest talk to Kafka: TLS (SSL, SASL_SSL) and/or SASL authentication"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism, used when the protocol is SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (prefer DOCLOOP_KAFKA_SASL_PASSWORD_FILE)"
    )
    kafka_sasl_password_file: Path | None = Field(
        None,
        description="file holding the SASL password (a mounted secret), read at start; wins over "
        "DOCLOOP_KAFKA_SASL_PASSWORD; one trailing newline is ignored",
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates (default: the system's)"
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate, for TLS client authentication")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM private key of DOCLOOP_KAFKA_SSL_CERTFILE")
    kafka_connect_timeout_seconds: float = Field(
        15.0, gt=0, description="serve exits when it cannot connect to and authenticate with Kafka within this"
    )

    # Processing
    batch_max_records: int = Field(
        1000,
        ge=1,
        description="most events a task applies in one database transaction (tasks with fewer ready share one of "
        "up to this many); a poll of Kafka takes up to this many per partition number (DOCLOOP_TOPIC_PARTITIONS "
        "times it)",
    )
    batch_timeout_ms: int = Field(200, ge=1, description="longest wait to fill a batch")
    max_event_bytes: int = Field(1_000_000, ge=1024, description="larger events go to the DLQ")
    max_clock_skew_minutes: int = Field(60, ge=0, description="events further ahead of wall time go to the DLQ")
    task_idle_ms: int = Field(
        2000,
        ge=0,
        description="how long a task waits for an input partition that ran dry before it goes on without it "
        "(and how long the department stage waits for a task with no input): serve equals replay when no input "
        "lags the others by more than this",
    )
    buffered_records_per_partition: int = Field(
        1000,
        ge=1,
        description="most records a task holds back per input partition while it waits for a quiet one; beyond "
        "it the consumer pauses that partition until the task catches up (memory stays bounded in a backfill)",
    )
    idle_advance_minutes: int = Field(60, ge=1, description="quiet time after which the clock follows wall time")
    relay_batch_size: int = Field(500, ge=1, description="outbox rows published per relay pass")
    relay_idle_ms: int = Field(100, ge=1, description="relay poll interval when the outbox is empty")
    relay_stuck_seconds: float = Field(
        120.0,
        gt=0,
        description="outbox rows unpublished this long (broker refusing or unreachable) make the relay report "
        "itself stuck: `/readyz` 503 and the `docloop_relay_stuck` gauge",
    )
    tick_seconds: float = Field(
        30.0, gt=0, description="how often serve checks whether the clock should follow wall time"
    )
    log_level: str = Field("INFO", description="log level of serve's JSON logs")
    migrate_on_start: bool = Field(
        True,
        description="serve applies Alembic migrations at start; set false where a migration job runs first "
        "(replicas starting together would otherwise race to migrate)",
    )
    phi_hash_key: SecretStr | None = Field(
        None,
        description="HMAC key for the stored hash of patient_ref; unset, a random key is made at the first start "
        "and kept in the store (table engine_secrets) so replicas agree; production should manage its own",
    )
    billing_team_id: str = Field("billing", description="recipient id of billing notifications")

    # Retention: what the store and the DLQ keep, and for how long
    dlq_retention_hours: int = Field(
        168,
        ge=1,
        description="retention of the DLQ topic (set when serve creates it): rejected bytes may hold PHI",
    )
    dlq_original_retention_hours: int = Field(
        168,
        ge=1,
        description="how long the store keeps a rejected record that was too large to republish whole, and "
        "parked outbox rows, for operators",
    )
    outbox_retention_hours: int = Field(
        168, ge=1, description="published outbox rows are deleted this long after publication"
    )
    dedup_window_days: int = Field(
        30,
        ge=1,
        description="event ids are remembered this long for dropping redeliveries; keep it longer than the "
        "inbound topics' retention",
    )
    prune_interval_minutes: float = Field(
        60.0, gt=0, description="how often serve prunes the outbox and the remembered event ids"
    )

    # Operations: the HTTP side port of serve
    http_host: str = Field("0.0.0.0", description="address the HTTP side port binds")
    http_port: int = Field(
        8080, ge=0, le=65535, description="HTTP side port of serve: `/metrics`, `/healthz`, `/readyz`; 0 disables it"
    )
    metrics_refresh_seconds: float = Field(
        15.0, gt=0, description="how often the gauges read from the database (open patterns, outbox backlog) refresh"
    )
    readiness_timeout_seconds: float = Field(
        2.0, gt=0, description="time allowed to each `/readyz` check (database `SELECT 1`, Kafka metadata)"
    )
    readiness_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="how long `/readyz` reuses each check's result; concurrent probes share one running check",
    )
    api_tokens: SecretStr | None = Field(
        None,
        description="bearer tokens of the read API on the side port, comma separated; the API is off unless "
        "this or DOCLOOP_API_TOKENS_FILE is set (prefer the file)",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="file of read API tokens, one per line (a mounted secret), read at start; wins over "
        "DOCLOOP_API_TOKENS",
    )
    start_timeout_seconds: float = Field(
        300.0,
        ge=0,
        description="how long serve retries (with backoff) an unreachable database at start before it exits "
        "with code 3; 0 retries forever",
    )

    # Rules (DESIGN.md defaults)
    pattern_threshold: int = Field(3, ge=1, description="cases within the window that open a pattern")
    window_days: int = Field(60, ge=1, description="days of service dates within which the threshold counts")
    escalate_recurrence_l1: int = Field(2, ge=1, description="post-feedback cases that raise a level-1 escalation")
    escalate_recurrence_l2: int = Field(4, ge=1, description="post-feedback cases that raise a level-2 escalation")
    remind_after_days: int = Field(7, ge=1, description="days without acknowledgement before the one reminder")
    escalate_unacked_days: int = Field(
        14, ge=1, description="days without acknowledgement before a level-1 `unacknowledged` escalation"
    )
    escalate_amount: Decimal = Field(
        Decimal("10000.00"), gt=0, description="amount at risk of a pattern that raises a level-2 escalation"
    )
    systemic_providers: int = Field(
        3, ge=2, description="providers of one department with open patterns of one root cause that make it systemic"
    )
    resolve_quiet_days: int = Field(
        60, ge=1, description="days since feedback, and since the latest case's service date, before a pattern resolves"
    )
    resolve_compliant_notes: int = Field(
        3, ge=0, description="compliant notes after feedback needed to resolve a pattern whose root cause has a check"
    )

    resolve_exposure: int = Field(
        3,
        ge=0,
        description="visits after feedback (provider, procedure), old enough to have been denied and not denied "
        "for the root cause, needed to resolve a clinician pattern; without them a quiet pattern is `dormant`",
    )
    denial_lag_days: int = Field(
        45,
        ge=0,
        description="days after a visit by which its denial would have come back (exposure counts older visits)",
    )

    @cached_property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            pattern_threshold=self.pattern_threshold,
            window_days=self.window_days,
            escalate_recurrence_l1=self.escalate_recurrence_l1,
            escalate_recurrence_l2=self.escalate_recurrence_l2,
            remind_after_days=self.remind_after_days,
            escalate_unacked_days=self.escalate_unacked_days,
            escalate_amount=self.escalate_amount,
            systemic_providers=self.systemic_providers,
            resolve_quiet_days=self.resolve_quiet_days,
            resolve_compliant_notes=self.resolve_compliant_notes,
            resolve_exposure=self.resolve_exposure,
            denial_lag_days=self.denial_lag_days,
            billing_team=self.billing_team_id,
        )


# ---- the configuration reference ----------------------------------------------------------------------

_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Decimal: "decimal",
    SecretStr: "secret",
    Path: "file path",
}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(names)
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "(unset)"
    return f"`{value}`"


def reference() -> str:
    """The Markdown table of every setting: variable, type, default (secrets hidden) and description."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        variable = f"`{prefix}{name.upper()}`"
        lines.append(f"| {variable} | {_type_name(field.annotation)} | {_default(field.default)} | {description} |")
    return "\n".join(lines) + "\n"


def replace_reference(document: str) -> str:
    """`document` with the text between the reference markers replaced by the current reference."""
    start, end = document.find(REFERENCE_BEGIN), document.find(REFERENCE_END)
    if start < 0 or end < start:
        raise ValueError(f"markers {REFERENCE_BEGIN} ... {REFERENCE_END} not found")
    return document[: start + len(REFERENCE_BEGIN)] + "\n" + reference() + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.settings", description="print the DOCLOOP_ configuration reference (Markdown)"
    )
    parser.add_argument(
        "--write",
        metavar="FILE",
        help=f"rewrite the section between {REFERENCE_BEGIN} and "
        f"{REFERENCE_END} in FILE (e.g. README.md) instead of printing",
    )
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(replace_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the configuration reference into {path}")
    else:
        sys.stdout.write(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
