"""Docloop's domain objects. Plain dataclasses: the store maps them to tables, the rules change them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from schemas import RootCause


class PatternKey(NamedTuple):
    provider_npi: str
    root_cause: RootCause
    procedure_code: str


class PatternStatus(StrEnum):
    PENDING = "pending"  # collecting cases, not yet at the threshold: nobody has been told anything
    OPEN = "open"  # feedback given; watching whether it changes the pattern
    RESOLVED = "resolved"  # quiet, with exposure (and compliant notes where checked): the episode is over
    # Quiet, but without visits to judge by: not evidence that feedback worked. Still watched: a later case
    # continues the episode as a recurrence, later exposure can still resolve it.
    DORMANT = "dormant"
    # The owner team's review found the feedback wrong: closed, and left out of every figure.
    WITHDRAWN = "withdrawn"


@dataclass
class Case:
    """One denied claim line for one root cause and rendering provider (or, line 0, a visit's undercoding found in
    its author's note). A resubmission denied again under the same provider updates it."""

    case_id: str
    claim_id: str
    line_number: int
    root_cause: RootCause
    provider_npi: str
    department: str
    procedure_code: str
    modifiers: list[str]
    encounter_id: str
    service_date: date
    amount: Decimal
    reason_codes: list[str]
    payer_id: str
    pattern_id: str
    post_feedback: bool
    first_denied_at: datetime
    last_denied_at: datetime
    denial_count: int = 1
    note_id: str | None = None
    patient_hash: str | None = None

    @property
    def key(self) -> PatternKey:
        return PatternKey(self.provider_npi, self.root_cause, self.procedure_code)

    @property
    def found_in_note(self) -> bool:
        """A case found in a signed note (undercoding): the note stands where the claim would, at line 0."""
        return self.line_number == 0


@dataclass(frozen=True)
class EvidenceRef:
    claim_id: str
    encounter_id: str
    service_date: date
    payer_id: str = ""  # lets a silence for a payer outage match the patterns that payer's denials built


@dataclass(frozen=True)
class ExposureNote:
    """A visit after feedback for the pattern's provider and procedure: a chance for the gap to recur."""

    service_date: date
    encounter_id: str


@dataclass
class Pattern:
    """One episode of a recurring gap: one provider, one root cause, one procedure."""

    pattern_id: str
    provider_npi: str
    root_cause: RootCause
    procedure_code: str
    episode: int
    department: str
    status: PatternStatus = PatternStatus.PENDING
    case_count: int = 0
    post_feedback_cases: int = 0
    amount_at_risk: Decimal = Decimal("0.00")
    reason_codes: list[str] = field(default_factory=list)
    evidence: list[EvidenceRef] = field(default_factory=list)
    last_service_date: date | None = None
    billed_with_modifier_25: bool = False
    opened_at: datetime | None = None
    acknowledged_at: datetime | None = None
    ack_response: str | None = None
    reminded: bool = False
    compliant_notes: int = 0
    resolved_at: datetime | None = None
    # Visits after feedback that did not become cases of this root cause, earliest first, bounded
    # (see rules.EXPOSURE_KEPT): what resolution on evidence counts once they are old enough to be denied.
    exposure: list[ExposureNote] = field(default_factory=list)
    dormant_at: datetime | None = None
    disputes: int = 0  # disputes received in this episode
    disputed_at: datetime | None = None  # a dispute awaiting its review
    reviewed_at: datetime | None = None
    review_outcome: str | None = None  # upheld | withdrawn, the latest review's
    alerts_no_change: int = 0  # pre-bill alerts answered "no change needed"
    next_due_at: datetime | None = None
    escalations: list[str] = field(default_factory=list)  # "level:reason" already raised for this episode
    quarantine: str | None = None  # why its timers stopped (a fault while firing one); None when healthy
    provider_name: str | None = None  # from the latest denial that named the rendering provider

    @property
    def key(self) -> PatternKey:
        return PatternKey(self.provider_npi, self.root_cause, self.procedure_code)

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def feedback_date(self) -> date | None:
        return self.opened_at.date() if self.opened_at else None


@dataclass
class Note:
    """What Docloop keeps of a signed note: enough to link cases and to count it once."""

    note_id: str
    encounter_id: str
    provider_npi: str
    service_date: date
    signed_at: datetime
    patient_hash: str | None = None
    pre_bill_alerted: bool = False
    compliant_for: list[str] = field(default_factory=list)  # pattern ids this note counted for
    procedure_codes: list[str] = field(default_factory=list)  # so the effect figure counts notes per procedure


@dataclass(frozen=True)
class DepartmentFact:
    """A pattern opened or closed, told to the department stage (cross-provider rules such as systemic).

    Provider tasks write these in the same transaction as the change; the stage applies them in event-time
    order once every task's clock has passed them, so its result does not depend on which task came first.
    `snapshot` carries what the stage's messages say about the pattern as of this fact."""

    department: str
    root_cause: RootCause
    pattern_id: str
    provider_npi: str
    opened: bool
    at: datetime
    snapshot: dict[str, str | int | None]

    @property
    def order(self) -> tuple[datetime, str, bool]:
        return (self.at, self.pattern_id, self.opened)
