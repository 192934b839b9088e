"""The three events other hospital systems publish to Docloop."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.common import NPI, Code, Contract, Envelope, Identifier, Money, RootCause


class Payer(Contract):
    id: Identifier
    name: str = Field(default="", max_length=256)


class RenderingProvider(Contract):
    npi: NPI
    name: str = Field(default="", max_length=256)
    department: Identifier


class Adjustment(Contract):
    group_code: Literal["CO", "PR", "OA", "PI", "CR"]
    reason_code: Code
    amount: Money


class DenialLine(Contract):
    line_number: int = Field(ge=1)
    procedure_code: Code
    modifiers: list[Code] = Field(default_factory=list, max_length=4)
    diagnosis_codes: list[Code] = Field(default_factory=list, max_length=12)
    billed_amount: Money
    paid_amount: Money
    adjustments: list[Adjustment] = Field(default_factory=list, max_length=99)
    remark_codes: list[Code] = Field(default_factory=list, max_length=99)


class ClaimDenied(Envelope):
    """A payer's remittance said no (or not all) to one or more lines of a claim."""

    event_type: Literal["claim.denied"]
    schema_version: Literal[1]
    claim_id: Identifier
    encounter_id: Identifier
    patient_ref: str | None = Field(default=None, max_length=256)
    payer: Payer
    rendering_provider: RenderingProvider
    service_date: date
    lines: list[DenialLine] = Field(min_length=1, max_length=999)


class Author(Contract):
    npi: NPI
    name: str = Field(default="", max_length=256)
    department: Identifier
    role: str = Field(default="physician", max_length=64)


MdmLevel = Literal["straightforward", "low", "moderate", "high"]


class Documentation(Contract):
    """Structured facts about what the note documents (never the note's text)."""

    procedure_codes: list[Code] = Field(default_factory=list, max_length=50)
    diagnosis_codes: list[Code] = Field(default_factory=list, max_length=50)
    total_time_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    mdm_level: MdmLevel | None = None
    medical_necessity: bool | None = None
    elements: list[str] = Field(default_factory=list, max_length=100)


class NoteSigned(Envelope):
    """A clinician signed a note (or an addendum) in the EHR."""

    event_type: Literal["note.signed"]
    schema_version: Literal[1]
    note_id: Identifier
    encounter_id: Identifier
    patient_ref: str | None = Field(default=None, max_length=256)
    author: Author
    note_type: str = Field(default="progress_note", max_length=64)
    service_date: date
    signed_at: AwareDatetime
    documentation: Documentation = Field(default_factory=Documentation)


class PatternKey(Contract):
    provider_npi: NPI
    root_cause: RootCause
    procedure_code: Code


class Acknowledger(Contract):
    type: Literal["provider", "team"]
    id: Identifier


# A closed set since issue #12 (schema_version stays 1: see README, "Decisions"): `accepted` the feedback holds;
# `disputed` it does not (a review by the root cause's owner team follows); `not_applicable` no change needed
# (naming a pre-bill alert: that note is fine as it is).
AckResponse = Literal["accepted", "disputed", "not_applicable"]
ReviewOutcome = Literal["upheld", "withdrawn"]


class FeedbackAcknowledged(Envelope):
    """Someone read a feedback notification and answered it; applies to the pattern's current episode."""

    event_type: Literal["feedback.acknowledged"]
    schema_version: Literal[1]
    notification_id: Identifier | None = None
    pattern_key: PatternKey | None = None
    acknowledged_by: Acknowledger
    response: AckResponse = "accepted"
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _names_its_pattern(self) -> FeedbackAcknowledged:
        if self.notification_id is None and self.pattern_key is None:
            raise ValueError("either notification_id or pattern_key is required")
        return self


class FeedbackReviewed(Envelope):
    """The owner team reviewed a disputed feedback: `upheld` (the loop resumes) or `withdrawn` (it was wrong)."""

    event_type: Literal["feedback.reviewed"]
    schema_version: Literal[1]
    notification_id: Identifier | None = None
    pattern_key: PatternKey | None = None
    reviewer: Acknowledger
    outcome: ReviewOutcome
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _names_its_pattern(self) -> FeedbackReviewed:
        if self.notification_id is None and self.pattern_key is None:
            raise ValueError("either notification_id or pattern_key is required")
        return self


InboundEvent = ClaimDenied | NoteSigned | FeedbackAcknowledged | FeedbackReviewed

EVENT_MODELS: dict[str, type[ClaimDenied] | type[NoteSigned] | type[FeedbackAcknowledged] | type[FeedbackReviewed]] = {
    "claim.denied": ClaimDenied,
    "note.signed": NoteSigned,
    "feedback.acknowledged": FeedbackAcknowledged,
    "feedback.reviewed": FeedbackReviewed,
}
