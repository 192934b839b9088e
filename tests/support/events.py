"""Builders for test events: small functions that return the JSON dicts publishers would send."""

from __future__ import annotations

from typing import Any

from schemas import npi_is_valid


def npi(prefix9: str) -> str:
    """A valid NPI from nine digits (the tenth is the check digit)."""
    for check in "0123456789":
        if npi_is_valid(prefix9 + check):
            return prefix9 + check
    raise AssertionError("unreachable: one check digit always fits")


def claim(
    event_id: str,
    *,
    occurred_at: str,
    service_date: str,
    provider: str,
    department: str = "Internal Medicine",
    claim_id: str | None = None,
    encounter_id: str | None = None,
    procedure_code: str = "99215",
    modifiers: list[str] | None = None,
    adjustments: list[tuple[str, str, str]] | None = None,
    remarks: list[str] | None = None,
    amount: str = "210.00",
    patient_ref: str = "MRN-0001",
    payer: str = "60054",
    line_number: int = 1,
) -> dict[str, Any]:
    """A claim-denied event with one line; adjustments are (group, CARC, amount)."""
    return {
        "event_type": "claim.denied",
        "schema_version": 1,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "source": "clearinghouse",
        "claim_id": claim_id or f"CLM-{event_id}",
        "encounter_id": encounter_id or f"ENC-{event_id}",
        "patient_ref": patient_ref,
        "payer": {"id": payer, "name": "Acme Health"},
        "rendering_provider": {"npi": provider, "name": "Test Provider", "department": department},
        "service_date": service_date,
        "lines": [
            {
                "line_number": line_number,
                "procedure_code": procedure_code,
                "modifiers": modifiers or [],
                "diagnosis_codes": ["E11.9"],
                "billed_amount": amount,
                "paid_amount": "0.00",
                "adjustments": [
                    {"group_code": g, "reason_code": c, "amount": a}
                    for g, c, a in (adjustments or [("CO", "150", amount)])
                ],
                "remark_codes": ["M25"] if remarks is None else remarks,
            }
        ],
    }


def note(
    event_id: str,
    *,
    signed_at: str,
    service_date: str,
    provider: str,
    department: str = "Internal Medicine",
    note_id: str | None = None,
    encounter_id: str | None = None,
    procedure_codes: list[str] | None = None,
    diagnosis_codes: list[str] | None = None,
    mdm_level: str | None = "high",
    total_time_minutes: int | None = None,
    medical_necessity: bool | None = True,
    elements: list[str] | None = None,
    patient_ref: str = "MRN-0001",
    occurred_at: str | None = None,
) -> dict[str, Any]:
    return {
        "event_type": "note.signed",
        "schema_version": 1,
        "event_id": event_id,
        "occurred_at": occurred_at or signed_at,
        "source": "ehr",
        "note_id": note_id or f"NOTE-{event_id}",
        "encounter_id": encounter_id or f"ENC-{event_id}",
        "patient_ref": patient_ref,
        "author": {"npi": provider, "name": "Test Provider", "department": department, "role": "physician"},
        "note_type": "progress_note",
        "service_date": service_date,
        "signed_at": signed_at,
        "documentation": {
            "procedure_codes": procedure_codes or ["99215"],
            "diagnosis_codes": ["E11.9"] if diagnosis_codes is None else diagnosis_codes,
            "total_time_minutes": total_time_minutes,
            "mdm_level": mdm_level,
            "medical_necessity": medical_necessity,
            "elements": elements or ["hpi", "exam", "assessment_plan"],
        },
    }


def ack(
    event_id: str,
    *,
    occurred_at: str,
    provider: str | None = None,
    root_cause: str = "em_level_unsupported",
    procedure_code: str = "99215",
    notification_id: str | None = None,
    response: str = "accepted",
    comment: str | None = None,
    by: str | None = None,
) -> dict[str, Any]:
    """`by`: who answers, when the event names only a notification (default: the pattern's provider)."""
    return {
        "event_type": "feedback.acknowledged",
        "schema_version": 1,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "source": "notify-service",
        "notification_id": notification_id,
        "pattern_key": None
        if provider is None
        else {"provider_npi": provider, "root_cause": root_cause, "procedure_code": procedure_code},
        "acknowledged_by": {"type": "provider", "id": by or provider or "unknown"},
        "response": response,
        "comment": comment,
    }


def review(
    event_id: str,
    *,
    occurred_at: str,
    outcome: str,
    provider: str | None = None,
    root_cause: str = "em_level_unsupported",
    procedure_code: str = "99215",
    notification_id: str | None = None,
    comment: str | None = None,
    reviewer: str = "clinical_documentation",
) -> dict[str, Any]:
    """`reviewer`: the owner team's id (routing.json), clinical_documentation for the default root cause."""
    return {
        "event_type": "feedback.reviewed",
        "schema_version": 1,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "source": "review-desk",
        "notification_id": notification_id,
        "pattern_key": None
        if provider is None
        else {"provider_npi": provider, "root_cause": root_cause, "procedure_code": procedure_code},
        "reviewer": {"type": "team", "id": reviewer},
        "outcome": outcome,
        "comment": comment,
    }
