"""Escalations and reminders reach the team that owns the root cause, in that owner's words."""

from __future__ import annotations

from typing import Any

from tests.support.events import claim, npi
from tests.support.world import World

A, B, C = npi("123456789"), npi("223456789"), npi("323456789")
ELIGIBILITY = [("CO", "27", "150.00")]
EM = [("CO", "150", "185.00")]


def denials(
    world: World, provider: str, adjustments: list[tuple[str, str, str]], remarks: list[str], **more: Any
) -> None:
    for i, (visit, denied) in enumerate((("2026-01-05", "02-02"), ("2026-01-12", "02-09"), ("2026-01-19", "02-16"))):
        event = claim(
            f"{provider}-{adjustments[0][1]}-{i}",
            occurred_at=f"2026-{denied}T09:00:00Z",
            service_date=visit,
            provider=provider,
            adjustments=adjustments,
            remarks=remarks,
            payer="60054",
            **more,
        )
        event["rendering_provider"]["name"] = f"Dr. {provider[:3]}"
        world.send(event)


def test_an_unacknowledged_eligibility_pattern_escalates_to_patient_access_not_the_department_lead() -> None:
    world = World()
    denials(world, A, ELIGIBILITY, ["N30"], department="Emergency Medicine")
    world.advance("2026-04-30T00:00:00Z")
    [escalation] = world.escalations("unacknowledged")
    assert escalation.target.role == "patient_access_manager"
    assert escalation.target.team == "patient_access"
    assert escalation.target.department == "Emergency Medicine"
    assert "clinician" not in escalation.summary.lower()
    assert "Owner: patient access and registration; escalated to the patient access manager." in escalation.summary


def test_a_billing_only_reminder_does_not_claim_a_clinician_was_told() -> None:
    world = World()
    denials(world, A, ELIGIBILITY, ["N30"])
    world.advance("2026-04-30T00:00:00Z")
    [reminder] = world.notifications("reminder")
    assert reminder.audience == "billing"
    assert "clinician" not in reminder.body.lower()
    assert "the fix lies with patient access and registration" in reminder.body


def test_a_documentation_reminder_to_billing_still_says_the_clinician_has_not_acknowledged() -> None:
    world = World()
    denials(world, A, EM, ["M25"])
    world.advance("2026-04-30T00:00:00Z")
    [billing] = world.notifications("reminder", "billing")
    assert "The clinician has not acknowledged the feedback yet." in billing.body
    [escalation] = world.escalations("unacknowledged")
    assert (escalation.target.role, escalation.target.team) == ("department_lead", "clinical_documentation")


def test_escalation_summaries_name_providers_by_npi_and_name() -> None:
    world = World()
    for provider in (A, B, C):
        denials(world, provider, EM, ["M25"])
    [systemic] = world.escalations("systemic")
    assert systemic.target.role == "cdi_director"
    assert systemic.facts.provider_names == {A: f"Dr. {A[:3]}", B: f"Dr. {B[:3]}", C: f"Dr. {C[:3]}"}
    assert f"Dr. {A[:3]} (NPI {A})" in systemic.summary
    assert systemic.facts.payer_ids == ["60054"]
    assert world.pattern(A).provider_name == f"Dr. {A[:3]}"


def test_no_clinical_department_lead_hears_about_an_administrative_root_cause() -> None:
    world = World()
    codes = {
        "eligibility": ([("CO", "27", "150.00")], ["N30"]),
        "authorization": ([("CO", "197", "150.00")], ["N54"]),
        "duplicate": ([("CO", "18", "150.00")], ["M86"]),
        "modifier": ([("CO", "4", "150.00")], []),
    }
    for adjustments, remarks in codes.values():
        denials(world, A, adjustments, remarks)
    world.advance("2026-04-30T00:00:00Z")
    roles = {(e.root_cause.value, e.target.role) for e in world.escalations()}
    assert roles == {
        ("eligibility", "patient_access_manager"),
        ("authorization_missing", "patient_access_manager"),
        ("duplicate", "billing_manager"),
        ("modifier_or_code_invalid", "coding_manager"),
    }
