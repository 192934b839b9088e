"""Documentation checks decide pre-bill alerts and compliant notes."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from engine.domain.checks import NoteFacts, passes_check
from schemas import Documentation, RootCause


def facts(signed_days_after: int = 0, **documentation: object) -> NoteFacts:
    return NoteFacts(
        date(2026, 3, 2),
        datetime(2026, 3, 2 + signed_days_after, 17, tzinfo=UTC),
        Documentation.model_validate(documentation),
    )


@pytest.mark.parametrize(
    ("code", "mdm", "minutes", "supported"),
    [
        ("99215", "high", None, True),
        ("99215", "moderate", None, False),
        ("99215", "moderate", 40, True),
        ("99215", None, 39, False),
        ("99214", "moderate", None, True),
        ("99214", "low", 30, True),
        ("99214", "low", 29, False),
        ("99213", "low", None, True),
        ("99213", "straightforward", 20, True),
        ("99213", None, None, False),
        ("99212", "straightforward", None, True),
        ("99212", None, 10, True),
        ("99205", "moderate", 60, True),
        ("99205", "moderate", 59, False),
        ("99204", "moderate", None, True),
        ("99203", None, 30, True),
        ("99202", None, 14, False),
    ],
)
def test_em_level_is_supported_by_mdm_or_total_time(
    code: str, mdm: str | None, minutes: int | None, supported: bool
) -> None:
    note = facts(mdm_level=mdm, total_time_minutes=minutes)
    assert passes_check(RootCause.EM_LEVEL_UNSUPPORTED, code, False, note) is supported


@pytest.mark.parametrize(
    ("root_cause", "modifier_25", "documentation", "signed_days_after", "passes"),
    [
        (
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
            False,
            {"medical_necessity": True, "diagnosis_codes": ["M17.11"]},
            0,
            True,
        ),
        (RootCause.MEDICAL_NECESSITY_UNSUPPORTED, False, {"medical_necessity": True}, 0, False),
        (
            RootCause.MEDICAL_NECESSITY_UNSUPPORTED,
            False,
            {"medical_necessity": None, "diagnosis_codes": ["I10"]},
            0,
            False,
        ),
        (RootCause.DIAGNOSIS_MISMATCH, False, {"diagnosis_codes": ["I10"]}, 0, True),
        (RootCause.DIAGNOSIS_MISMATCH, False, {}, 0, False),
        (RootCause.BUNDLING, True, {"elements": ["separately_identifiable_em"]}, 0, True),
        (RootCause.BUNDLING, True, {"elements": ["hpi"]}, 0, False),
        (RootCause.BUNDLING, False, {"elements": ["hpi"]}, 0, True),
        (RootCause.RECORDS_MISSING, False, {}, 3, True),
        (RootCause.RECORDS_MISSING, False, {}, 4, False),
        (RootCause.FREQUENCY_UNSUPPORTED, False, {}, 20, True),
        (RootCause.ELIGIBILITY, False, {}, 20, True),
    ],
)
def test_root_cause_documentation_checks(
    root_cause: RootCause, modifier_25: bool, documentation: dict[str, object], signed_days_after: int, passes: bool
) -> None:
    code = "99214" if root_cause is RootCause.BUNDLING else "27447"
    assert passes_check(root_cause, code, modifier_25, facts(signed_days_after, **documentation)) is passes
