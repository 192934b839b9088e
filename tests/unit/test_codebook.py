"""The code book maps each denial adjustment, refined by the line's RARCs, to a root cause."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.codebook import CodeBook
from schemas import DenialLine, RootCause

BOOK = CodeBook.load()


def line(adjustments: list[tuple[str, str, str]], remarks: list[str] | None = None, code: str = "99214") -> DenialLine:
    return DenialLine.model_validate(
        {
            "line_number": 1,
            "procedure_code": code,
            "billed_amount": "200.00",
            "paid_amount": "0.00",
            "adjustments": [{"group_code": g, "reason_code": c, "amount": a} for g, c, a in adjustments],
            "remark_codes": remarks or [],
        }
    )


@pytest.mark.parametrize(
    ("group", "carc", "remarks", "expected"),
    [
        ("CO", "150", ["M25"], RootCause.EM_LEVEL_UNSUPPORTED),
        ("CO", "16", ["M127"], RootCause.RECORDS_MISSING),
        ("CO", "16", ["N706"], RootCause.RECORDS_MISSING),
        ("CO", "16", ["N29"], RootCause.RECORDS_MISSING),
        ("CO", "252", [], RootCause.RECORDS_MISSING),
        ("CO", "226", [], RootCause.RECORDS_MISSING),
        ("CO", "50", ["N661"], RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CO", "167", [], RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CO", "272", [], RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CO", "96", ["N386"], RootCause.MEDICAL_NECESSITY_UNSUPPORTED),
        ("CO", "151", [], RootCause.FREQUENCY_UNSUPPORTED),
        ("CO", "152", [], RootCause.FREQUENCY_UNSUPPORTED),
        ("CO", "11", [], RootCause.DIAGNOSIS_MISMATCH),
        ("CO", "146", [], RootCause.DIAGNOSIS_MISMATCH),
        ("CO", "16", ["M76"], RootCause.DIAGNOSIS_MISMATCH),
        ("CO", "97", ["M15"], RootCause.BUNDLING),
        ("CO", "234", [], RootCause.BUNDLING),
        ("CO", "236", [], RootCause.BUNDLING),
        ("CO", "B15", [], RootCause.BUNDLING),
        ("CO", "4", [], RootCause.MODIFIER_OR_CODE_INVALID),
        ("CO", "189", [], RootCause.MODIFIER_OR_CODE_INVALID),
        ("CO", "16", ["N290"], RootCause.PROVIDER_IDENTIFIER_MISSING),
        ("CO", "16", ["MA130"], RootCause.CLAIM_DATA_INCOMPLETE),
        ("CO", "16", [], RootCause.CLAIM_DATA_INCOMPLETE),
        ("CO", "197", ["N54"], RootCause.AUTHORIZATION_MISSING),
        ("CO", "15", [], RootCause.AUTHORIZATION_MISSING),
        ("CO", "288", [], RootCause.AUTHORIZATION_MISSING),
        ("CO", "27", ["N30"], RootCause.ELIGIBILITY),
        ("OA", "109", [], RootCause.ELIGIBILITY),
        ("CO", "29", [], RootCause.TIMELY_FILING),
        ("OA", "18", ["M86"], RootCause.DUPLICATE),
        ("CO", "96", [], RootCause.NOT_COVERED),
        ("PI", "55", [], RootCause.NOT_COVERED),
        ("CO", "251", ["N206"], RootCause.UNCLASSIFIED),
        ("OA", "A7", [], RootCause.UNCLASSIFIED),
    ],
)
def test_adjustment_maps_to_root_cause(group: str, carc: str, remarks: list[str], expected: RootCause) -> None:
    findings = BOOK.classify(line([(group, carc, "200.00")], remarks))
    assert [f.root_cause for f in findings] == [expected]


@pytest.mark.parametrize(
    "adjustment",
    [
        ("PR", "1", "20.00"),
        ("PR", "2", "20.00"),
        ("PR", "3", "20.00"),
        ("CO", "45", "20.00"),
        ("CO", "253", "2.00"),
        ("OA", "23", "20.00"),
    ],
)
def test_cost_sharing_and_fee_schedule_adjustments_are_not_denials(adjustment: tuple[str, str, str]) -> None:
    assert BOOK.classify(line([adjustment])) == []


def test_case_amount_sums_only_the_adjustments_of_its_root_cause() -> None:
    findings = BOOK.classify(
        line([("CO", "150", "100.00"), ("CO", "45", "30.00"), ("CO", "150", "20.50"), ("CO", "27", "5.00")], ["M25"])
    )
    by_cause = {f.root_cause: f for f in findings}
    assert by_cause[RootCause.EM_LEVEL_UNSUPPORTED].amount == Decimal("120.50")
    assert by_cause[RootCause.ELIGIBILITY].amount == Decimal("5.00")
    assert by_cause[RootCause.EM_LEVEL_UNSUPPORTED].reason_codes == ("CO-150", "M25")


def test_administrative_root_causes_are_billing_only() -> None:
    clinician = {c for c in RootCause if BOOK.is_clinician_facing(c)}
    assert clinician == {
        RootCause.EM_LEVEL_UNSUPPORTED,
        RootCause.EM_LEVEL_UNDERCODED,
        RootCause.RECORDS_MISSING,
        RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
        RootCause.FREQUENCY_UNSUPPORTED,
        RootCause.DIAGNOSIS_MISMATCH,
        RootCause.BUNDLING,
    }
