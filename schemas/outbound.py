"""The two messages Docloop publishes: feedback notifications and escalations."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Money, RootCause

NotificationKind = Literal[
    "pattern_opened",
    "pattern_recurring",
    "reminder",
    "pre_bill_alert",
    "pattern_resolved",
    "pattern_dormant",
    "review_requested",
    "feedback_upheld",
    "feedback_withdrawn",
]
Audience = Literal["clinician", "billing"]
PatternStatus = Literal["pending", "open", "resolved", "dormant", "withdrawn"]
EscalationReason = Literal[
    "recurrence_after_feedback", "unacknowledged", "amount_at_risk", "systemic", "dispute_unanswered"
]


class Outbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Recipient(Outbound):
    type: Literal["provider", "team"]
    id: str


class PatternSummary(Outbound):
    provider_npi: str
    root_cause: RootCause
    procedure_code: str
    department: str
    case_count: int
    post_feedback_cases: int
    status: PatternStatus
    # Billing only: clinician messages carry null here, so no money reaches a clinician.
    amount_at_risk: Money | None = None
    reason_codes: list[str] | None = None


class Evidence(Outbound):
    claim_id: str
    encounter_id: str
    service_date: date


class NoteRef(Outbound):
    """The note a pre-bill alert is about, and the elements its check found missing (keys; the body words them)."""

    note_id: str
    encounter_id: str
    service_date: date
    missing: list[str]


class FeedbackNotification(Outbound):
    notification_id: str
    kind: NotificationKind
    audience: Audience
    recipient: Recipient
    pattern_id: str
    pattern: PatternSummary
    title: str
    body: str
    guidance: str
    evidence: list[Evidence]
    note: NoteRef | None = None  # pre-bill alerts only
    created_at: datetime
    schema_version: Literal[1] = 1


class EscalationTarget(Outbound):
    role: Literal["department_lead", "revenue_cycle_leadership", "review_team_lead"]
    department: str


class EscalationFacts(Outbound):
    case_count: int
    post_feedback_cases: int
    amount_at_risk: Money
    providers: list[str]
    open_patterns: int = Field(description="patterns behind this escalation that are open now")
    days_since_feedback: int | None = None


class EscalationRaised(Outbound):
    escalation_id: str
    level: Literal[1, 2]
    reason: EscalationReason
    target: EscalationTarget
    pattern_id: str | None
    department: str
    root_cause: RootCause
    facts: EscalationFacts
    summary: str
    created_at: datetime
    schema_version: Literal[1] = 1
