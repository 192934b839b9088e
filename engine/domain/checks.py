"""Documentation checks: does a signed note document what a root cause needs? Pure functions of note facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from schemas import Documentation, RootCause

MDM_RANK = {"straightforward": 1, "low": 2, "moderate": 3, "high": 4}

# Office/outpatient E/M: the MDM level, or the total minutes on the date of the visit, each code needs.
# New patient (99202-99205) and established patient (99212-99215) codes, 2021 AMA guidelines.
EM_REQUIREMENTS: dict[str, tuple[str, int]] = {
    "99202": ("straightforward", 15),
    "99203": ("low", 30),
    "99204": ("moderate", 45),
    "99205": ("high", 60),
    "99212": ("straightforward", 10),
    "99213": ("low", 20),
    "99214": ("moderate", 30),
    "99215": ("high", 40),
}

RECORDS_SIGNING_DAYS = 3


@dataclass(frozen=True)
class NoteFacts:
    service_date: date
    signed_at: datetime
    documentation: Documentation


def is_office_em(procedure_code: str) -> bool:
    return procedure_code in EM_REQUIREMENTS


def em_level_supported(procedure_code: str, documentation: Documentation) -> bool:
    required_mdm, required_minutes = EM_REQUIREMENTS[procedure_code]
    mdm = documentation.mdm_level
    if mdm is not None and MDM_RANK[mdm] >= MDM_RANK[required_mdm]:
        return True
    minutes = documentation.total_time_minutes
    return minutes is not None and minutes >= required_minutes


def has_check(root_cause: RootCause) -> bool:
    return root_cause in {
        RootCause.EM_LEVEL_UNSUPPORTED,
        RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
        RootCause.DIAGNOSIS_MISMATCH,
        RootCause.BUNDLING,
        RootCause.RECORDS_MISSING,
    }


def passes_check(root_cause: RootCause, procedure_code: str, billed_with_modifier_25: bool, note: NoteFacts) -> bool:
    """True when the note documents what the root cause needs (or the root cause has no check)."""
    doc = note.documentation
    if root_cause is RootCause.EM_LEVEL_UNSUPPORTED:
        return not is_office_em(procedure_code) or em_level_supported(procedure_code, doc)
    if root_cause is RootCause.MEDICAL_NECESSITY_UNSUPPORTED:
        return doc.medical_necessity is True and bool(doc.diagnosis_codes)
    if root_cause is RootCause.DIAGNOSIS_MISMATCH:
        return bool(doc.diagnosis_codes)
    if root_cause is RootCause.BUNDLING:
        # Notes carry no modifiers, so the pattern's own claims tell whether modifier 25 is in play.
        needs_separate_em = billed_with_modifier_25 and is_office_em(procedure_code)
        return not needs_separate_em or "separately_identifiable_em" in doc.elements
    if root_cause is RootCause.RECORDS_MISSING:
        return (note.signed_at.date() - note.service_date).days <= RECORDS_SIGNING_DAYS
    return True
