"""Documentation checks: does a signed note document what a root cause needs? Pure functions of note facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources

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


@cache
def em_rates() -> dict[str, Decimal]:
    """Rough payment per office E/M code (data/em_rates.json), for estimating revenue left unbilled."""
    text = resources.files("engine.domain").joinpath("data/em_rates.json").read_text("utf-8")
    return {code: Decimal(rate) for code, rate in json.loads(text)["rates"].items()}


def supported_em_level(procedure_code: str, documentation: Documentation) -> str:
    """The highest office E/M code of the same family (new or established patient) the note supports."""
    return _supported_em_level(procedure_code, documentation.mdm_level, documentation.total_time_minutes)


@lru_cache(maxsize=4096)  # asked for every office visit's note, from a handful of (code, MDM, minutes)
def _supported_em_level(procedure_code: str, mdm: str | None, minutes: int | None) -> str:
    family = [code for code in EM_REQUIREMENTS if code[:4] == procedure_code[:4]]
    supported = [code for code in family if not _em_gaps(code, mdm, minutes)]
    return max(supported, default=procedure_code)


def undercoded_levels(documentation: Documentation) -> list[tuple[str, str]]:
    """(code on the note, higher code its MDM or total time supports) for each office E/M code selected too low."""
    found = []
    for code in documentation.procedure_codes:
        if is_office_em(code):
            supported = supported_em_level(code, documentation)
            if supported > code:
                found.append((code, supported))
    return found


def unbilled_estimate(code: str, supported: str) -> Decimal:
    rates = em_rates()
    return max(Decimal("0.00"), rates.get(supported, Decimal("0")) - rates.get(code, Decimal("0")))


@dataclass(frozen=True)
class NoteFacts:
    service_date: date
    signed_at: datetime
    documentation: Documentation


def is_office_em(procedure_code: str) -> bool:
    return procedure_code in EM_REQUIREMENTS


def em_level_gaps(procedure_code: str, documentation: Documentation) -> list[str]:
    """What keeps the note from supporting the E/M level selected: neither MDM nor time reaches it."""
    return _em_gaps(procedure_code, documentation.mdm_level, documentation.total_time_minutes)


def _em_gaps(procedure_code: str, mdm: str | None, minutes: int | None) -> list[str]:
    required_mdm, required_minutes = EM_REQUIREMENTS[procedure_code]
    if (mdm is not None and MDM_RANK[mdm] >= MDM_RANK[required_mdm]) or (
        minutes is not None and minutes >= required_minutes
    ):
        return []
    return [
        "mdm_not_recorded" if mdm is None else "mdm_below_level",
        "time_not_recorded" if minutes is None else "time_below_level",
    ]


CHECKED = frozenset(
    {
        RootCause.EM_LEVEL_UNSUPPORTED,
        RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
        RootCause.DIAGNOSIS_MISMATCH,
        RootCause.BUNDLING,
        RootCause.RECORDS_MISSING,
    }
)


def has_check(root_cause: RootCause) -> bool:
    return root_cause in CHECKED


def passes_check(root_cause: RootCause, procedure_code: str, billed_with_modifier_25: bool, note: NoteFacts) -> bool:
    """True when the note documents what the root cause needs (or the root cause has no check)."""
    return not missing_elements(root_cause, procedure_code, billed_with_modifier_25, note)


def missing_elements(
    root_cause: RootCause, procedure_code: str, billed_with_modifier_25: bool, note: NoteFacts
) -> list[str]:
    """The documented elements the check found missing, as keys of data/messages.json's `missing_elements`."""
    doc = note.documentation
    if root_cause is RootCause.EM_LEVEL_UNSUPPORTED:
        return em_level_gaps(procedure_code, doc) if is_office_em(procedure_code) else []
    if root_cause is RootCause.MEDICAL_NECESSITY_UNSUPPORTED:
        missing = [] if doc.medical_necessity is True else ["medical_necessity_not_stated"]
        return missing + ([] if doc.diagnosis_codes else ["diagnosis_not_documented"])
    if root_cause is RootCause.DIAGNOSIS_MISMATCH:
        return [] if doc.diagnosis_codes else ["diagnosis_not_documented"]
    if root_cause is RootCause.BUNDLING:
        # Notes carry no modifiers, so the pattern's own claims tell whether modifier 25 is in play.
        needs_separate_em = billed_with_modifier_25 and is_office_em(procedure_code)
        if needs_separate_em and "separately_identifiable_em" not in doc.elements:
            return ["separate_evaluation_not_documented"]
        return []
    if root_cause is RootCause.RECORDS_MISSING:
        late = (note.signed_at.date() - note.service_date).days > RECORDS_SIGNING_DAYS
        return ["signed_late"] if late else []
    return []
