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


# A closed set since issue #12 (schema_version stays 1: see README, "Decisions"): `accepted` the feedback holds;
# `disputed` it does not (a review by the root cause's owner team follows); `not_applicable` no change needed
# (naming a pre-bill alert: that note is fine as it is).
AckResponse = Literal["accepted", "disputed", "not_applicable"]
ReviewOutcome = Literal["upheld", "withdrawn"]


class FeedbackAcknowledged(Envelope):
    """Someone read a feedback notification and answered it; applies to the pattern's current episode."""

    event_type: Literal["feedback.acknowledged"]
    schema_version: SchemaVersion
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


class SilenceMatchers(Contract):
    """Equality matchers: a message matches when, for every list given, each of its values is in the list.

    A message about several providers or payers (a systemic escalation, a pattern's evidence) matches only if
    all of them are listed: a silence never hides what it does not fully cover. No regular expressions.
    """

    provider_npi: list[NPI] = Field(default_factory=list, max_length=1000)
    department: list[Identifier] = Field(default_factory=list, max_length=1000)
    root_cause: list[RootCause] = Field(default_factory=list, max_length=100)
    payer_id: list[Identifier] = Field(default_factory=list, max_length=1000)
    procedure_code: list[Code] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _names_something(self) -> SilenceMatchers:
        if not any((self.provider_npi, self.department, self.root_cause, self.payer_id, self.procedure_code)):
            raise ValueError("a silence needs at least one matcher (it would silence everything)")
        return self


class FeedbackSilence(Envelope):
    """Hold matching notifications and escalations between starts_at and ends_at (e.g. a known payer outage).

    `set` creates the silence, or replaces the one with the same silence_id (to extend or shorten it);
    `expire` ends it early, at `ends_at` if given, else at `occurred_at`. Consumed by the routing stage on
    its own topic (DOCLOOP_TOPIC_SILENCES), not by the pattern rules.
    """

    event_type: Literal["feedback.silence"]
    schema_version: Literal[1]
    silence_id: Identifier
    action: Literal["set", "expire"] = "set"
    matchers: SilenceMatchers | None = None
    starts_at: EventTime | None = Field(default=None, description="default: occurred_at")
    ends_at: EventTime | None = None
    author: str = Field(min_length=1, max_length=256)
    reason: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _complete(self) -> FeedbackSilence:
        if self.action == "set":
            if self.matchers is None or self.ends_at is None:
                raise ValueError("a silence that is set needs matchers and ends_at")
            if self.ends_at <= (self.starts_at or self.occurred_at):
                raise ValueError("ends_at must be after starts_at")
        return self


class FeedbackReviewed(Envelope):
    """The owner team reviewed a disputed feedback: `upheld` (the loop resumes) or `withdrawn` (it was wrong)."""

    event_type: Literal["feedback.reviewed"]
    schema_version: SchemaVersion
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
