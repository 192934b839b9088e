"""Configuration: every DOCLOOP_ environment variable, with its default and meaning."""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.domain.rules import Thresholds


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCLOOP_", extra="ignore")

    # Store and broker
    database_url: str = Field("sqlite+aiosqlite:///./docloop.db", description="SQLAlchemy async URL of the store")
    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers, comma separated")
    group_id: str = Field("docloop", description="Kafka consumer group of the engine replicas")
    topic_claims_denied: str = "claims.denied.v1"
    topic_notes_signed: str = "notes.signed.v1"
    topic_acks: str = "feedback.acks.v1"
    topic_notifications: str = "feedback.notifications.v1"
    topic_escalations: str = "feedback.escalations.v1"
    topic_dlq: str = "docloop.dlq.v1"
    topic_partitions: int = Field(6, ge=1, description="partitions of the topics the engine declares")
    topic_replication: int = Field(1, ge=1, description="replication factor of the topics the engine declares")

    # Processing
    batch_max_records: int = Field(500, ge=1, description="most events applied in one database transaction")
    batch_timeout_ms: int = Field(200, ge=1, description="longest wait to fill a batch")
    max_event_bytes: int = Field(1_000_000, ge=1024, description="larger events go to the DLQ")
    max_clock_skew_minutes: int = Field(60, ge=0, description="events further ahead of wall time go to the DLQ")
    idle_advance_minutes: int = Field(60, ge=1, description="quiet time after which the clock follows wall time")
    relay_batch_size: int = Field(500, ge=1, description="outbox rows published per relay pass")
    relay_idle_ms: int = Field(100, ge=1, description="relay poll interval when the outbox is empty")
    tick_seconds: float = Field(
        30.0, gt=0, description="how often serve checks whether the clock should follow wall time"
    )
    log_level: str = Field("INFO", description="log level of serve's JSON logs")
    phi_hash_key: SecretStr = Field(
        SecretStr("docloop-development-key"),
        description="HMAC key for the stored hash of patient_ref; set in production",
    )
    billing_team_id: str = Field("billing", description="recipient id of billing notifications")

    # Rules (DESIGN.md defaults)
    pattern_threshold: int = Field(3, ge=1)
    window_days: int = Field(60, ge=1)
    escalate_recurrence_l1: int = Field(2, ge=1)
    escalate_recurrence_l2: int = Field(4, ge=1)
    remind_after_days: int = Field(7, ge=1)
    escalate_unacked_days: int = Field(14, ge=1)
    escalate_amount: Decimal = Field(Decimal("10000.00"), gt=0)
    systemic_providers: int = Field(3, ge=2)
    resolve_quiet_days: int = Field(60, ge=1)
    resolve_compliant_notes: int = Field(3, ge=0)

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
            billing_team=self.billing_team_id,
        )
