"""The three events other hospital systems publish to Docloop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import (
    NPI,
    Amount,
    Code,
    Contract,
    Envelope,
    EventDate,
    EventTime,
    Identifier,
    LineNumber,
    Minutes,
    RootCause,
    SchemaVersion,
)


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
    amount: Amount


class DenialLine(Contract):
    line_number: LineNumber
    procedure_code: Code
    modifiers: list[Code] = Field(default_factory=list, max_length=4)
    diagnosis_codes: list[Code] = Field(default_factory=list, max_length=12)
    billed_amount: Amount
    paid_amount: Amount
    adjustments: list[Adjustment] = Field(default_factory=list, max_length=99)
    remark_codes: list[Code] = Field(default_factory=list, max_length=99)


class ClaimDenied(Envelope):
    """A payer's remittance said no (or not all) to one or more lines of a claim."""

    event_type: Literal["claim.denied"]
    schema_version: SchemaVersion
    claim_id: Identifier
    encounter_id: Identifier
    patient_ref: str | None = Field(default=None, max_length=256)
    payer: Payer
    rendering_provider: RenderingProvider
    service_date: EventDate
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
    total_time_minutes: Minutes | None = None
    mdm_level: MdmLevel | None = None
    medical_necessity: bool | None = None
    elements: list[str] = Field(default_factory=list, max_length=100)


class NoteSigned(Envelope):
    """A clinician signed a note (or an addendum) in the EHR."""

    event_type: Literal["note.signed"]
    schema_version: SchemaVersion
    note_id: Identifier
    encounter_id: Identifier
    patient_ref: str | None = Field(default=None, max_length=256)
    author: Author
    note_type: str = Field(default="progress_note", max_length=64)
    service_date: EventDate
    signed_at: EventTime
    documentation: Documentation = Field(default_factory=Documentation)


class PatternKey(Contract):
    provider_npi: NPI
    root_cause: RootCause
    procedure_code: Code


class Acknowledger(Contract):
    type: Literal["provider", "team"]
    id: Identifier


class FeedbackAcknowledged(Envelope):
    """Someone read a feedback notification and answered it; applies to the pattern's current episode."""

    event_type: Literal["feedback.acknowledged"]
    schema_version: SchemaVersion
    notification_id: Identifier | None = None
    pattern_key: PatternKey | None = None
    acknowledged_by: Acknowledger
    response: str = Field(default="accepted", min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _names_its_pattern(self) -> FeedbackAcknowledged:
        if self.notification_id is None and self.pattern_key is None:
            raise ValueError("either notification_id or pattern_key is required")
        return self


InboundEvent = ClaimDenied | NoteSigned | FeedbackAcknowledged

EVENT_MODELS: dict[str, type[ClaimDenied] | type[NoteSigned] | type[FeedbackAcknowledged]] = {
    "claim.denied": ClaimDenied,
    "note.signed": NoteSigned,
    "feedback.acknowledged": FeedbackAcknowledged,
}
