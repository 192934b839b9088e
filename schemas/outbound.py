"""The messages Docloop publishes: feedback notifications, escalations and digests.

Every per-fact message carries `delivery`: `send` (a person receives it now), `digest` (a person receives it
listed in a FeedbackDigest, whose own delivery is `send`) or `held` (inhibited, silenced or over a rate limit:
recorded for systems, not sent to anyone). A notification service delivers `send` only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from schemas.common import RootCause

# A total over many denied lines: wider than one inbound amount (the engine saturates totals at this bound,
# so every total it accepted can be published).
Total = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(lambda value: f"{value:.2f}", return_type=str, when_used="always"),
]

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
Delivery = Literal["send", "digest", "held"]
# Who an escalation goes to: each root cause's owner team names its level-1 and level-2 roles (routing.json).
EscalationRole = Literal[
    "department_lead",
    "cdi_director",
    "coding_manager",
    "patient_access_manager",
    "patient_access_director",
    "billing_manager",
    "revenue_cycle_leadership",
]
DigestAudience = Literal["clinician", "billing", "leadership"]
DigestReason = Literal["first_notification", "new_alerts", "resolved"]


class Outbound(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Recipient(Outbound):
    type: Literal["provider", "team", "role"]  # role: a leadership role, `role` or `role@department` (digests)
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
    amount_at_risk: Total | None = None
    reason_codes: list[str] | None = None


class Evidence(Outbound):
    claim_id: str
    encounter_id: str
    service_date: date
    payer_id: str | None = None


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
    delivery: Delivery = Field(
        default="send", description="send: delivered now; digest: listed in a FeedbackDigest; held: not sent"
    )
    delivery_reason: str | None = Field(
        default=None,
        description="why not sent on its own: `digest:<route>`, `silence:<silence_id>`, `inhibited:<rule>` "
        "or `rate_limited:<route>`",
    )


class EscalationTarget(Outbound):
    role: EscalationRole
    team: str = Field(description="the team that owns the root cause (routing.json), whose lead this role is")
    department: str


class EscalationFacts(Outbound):
    case_count: int
    post_feedback_cases: int
    amount_at_risk: Total
    providers: list[str]
    provider_names: dict[str, str] = Field(default_factory=dict, description="NPI -> name, where a denial named one")
    payer_ids: list[str] = Field(default_factory=list, description="payers of the denials in the evidence")
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
    procedure_code: str | None = Field(default=None, description="the pattern's procedure; null for systemic")
    facts: EscalationFacts
    summary: str
    created_at: datetime
    schema_version: Literal[1] = 1
    delivery: Delivery = Field(
        default="send", description="send: delivered now; digest: listed in a FeedbackDigest; held: not sent"
    )
    delivery_reason: str | None = Field(
        default=None,
        description="why not sent on its own: `digest:<route>`, `silence:<silence_id>`, `inhibited:<rule>` "
        "or `rate_limited:<route>`",
    )


class DigestPattern(Outbound):
    """One pattern in a digest: what it is, its evidence, and the per-fact messages the digest stands for."""

    pattern_id: str | None = Field(description="null for a systemic escalation (a department and root cause)")
    department: str
    root_cause: RootCause
    pattern: PatternSummary | None = None
    headlines: list[str] = Field(description="titles (notifications) or summaries (escalations), oldest first")
    evidence: list[Evidence]
    message_ids: list[str] = Field(description="notification_id / escalation_id of the per-fact messages covered")


class FeedbackDigest(Outbound):
    """What was due for one recipient in one group window, as one message (published on the notifications topic)."""

    digest_id: str
    kind: Literal["digest"] = "digest"
    audience: DigestAudience
    recipient: Recipient
    delivery: Literal["send"] = "send"
    route: str = Field(description="the routing-tree route whose group this is")
    reason: DigestReason
    window_start: datetime
    window_end: datetime
    title: str
    body: str
    patterns: list[DigestPattern]
    covers: list[str] = Field(description="every per-fact message id listed, in the order they were routed")
    created_at: datetime
    schema_version: Literal[1] = 1
