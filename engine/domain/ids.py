"""Ids are derived from what they identify (UUIDv5), never random: the same input gives the same output."""

from __future__ import annotations

import uuid

DOCLOOP_NAMESPACE = uuid.UUID("5f0c3c2e-7f7e-4d0a-9a57-64f1c0d1e001")


def derive(*parts: object) -> str:
    return str(uuid.uuid5(DOCLOOP_NAMESPACE, "|".join(str(part) for part in parts)))


def case_id(claim_id: str, line_number: int, root_cause: str, provider_npi: str) -> str:
    """A denied claim line: one case per line, cause and rendering provider, so a resubmission denied again is
    the same case, and one resubmitted under another provider (a corrected rendering NPI) is a case of that
    provider: the denial is about the documentation of the provider the claim names, and that provider's events
    are applied by that provider's task."""
    return derive("case", claim_id, line_number, root_cause, provider_npi)


def note_case_id(encounter_id: str, procedure_code: str, root_cause: str, author_npi: str) -> str:
    """A case found in a signed note (undercoding): one per visit, code and author, so an addendum is the same case
    and a visit two clinicians sign (a resident and an attending) is a case of each author whose note shows it:
    the feedback is about each one's documentation, and each author's notes are applied by that author's task."""
    return derive("case", "note", encounter_id, procedure_code, root_cause, author_npi)


def pattern_id(provider_npi: str, root_cause: str, procedure_code: str, episode: int) -> str:
    return derive("pattern", provider_npi, root_cause, procedure_code, episode)


def notification_id(pattern_id: str, kind: str, audience: str, about: str = "") -> str:
    return derive("notification", pattern_id, kind, audience, about)


def escalation_id(subject: str, level: int, reason: str) -> str:
    return derive("escalation", subject, level, reason)


def digest_id(recipient: str, route: str, window_start: object, window_end: object) -> str:
    return derive("digest", recipient, route, window_start, window_end)


def dlq_id(source_id: str) -> str:
    return derive("dlq", source_id)
