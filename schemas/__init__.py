"""Docloop's public event contracts. Other systems may import this package to build and check events."""

from schemas.common import SCHEMA_VERSION, RootCause, npi_is_valid
from schemas.decoding import InvalidEvent, decode_event
from schemas.inbound import (
    Acknowledger,
    Adjustment,
    Author,
    ClaimDenied,
    DenialLine,
    Documentation,
    FeedbackAcknowledged,
    FeedbackReviewed,
    InboundEvent,
    NoteSigned,
    PatternKey,
    Payer,
    RenderingProvider,
)
from schemas.outbound import (
    EscalationFacts,
    EscalationRaised,
    EscalationTarget,
    Evidence,
    FeedbackNotification,
    NoteRef,
    PatternSummary,
    Recipient,
)

__all__ = [
    "SCHEMA_VERSION",
    "Acknowledger",
    "Adjustment",
    "Author",
    "ClaimDenied",
    "DenialLine",
    "Documentation",
    "EscalationFacts",
    "EscalationRaised",
    "EscalationTarget",
    "Evidence",
    "FeedbackAcknowledged",
    "FeedbackNotification",
    "FeedbackReviewed",
    "InboundEvent",
    "InvalidEvent",
    "NoteRef",
    "NoteSigned",
    "PatternKey",
    "PatternSummary",
    "Payer",
    "Recipient",
    "RenderingProvider",
    "RootCause",
    "decode_event",
    "npi_is_valid",
]
