"""The feedback loop's rules, event by event, on in-memory state (DESIGN.md, "Domain semantics")."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from engine.domain.model import PatternKey, PatternStatus
from schemas import RootCause
from tests.support.events import ack, claim, note, npi, review
from tests.support.world import World

A = npi("123456789")
B = npi("198765432")
C = npi("176543210")
D = npi("154321098")

EM = [("CO", "150", "185.00")]


def three_denials(world: World, provider: str = A, **overrides: object) -> None:
    """Three 99215 visits a week apart in January, denied in February: opens on Feb 16 at 09:00."""
    for i, (visit, denied) in enumerate((("2026-01-05", "02-02"), ("2026-01-12", "02-09"), ("2026-01-19", "02-16"))):
        world.send(
            claim(
                f"{provider}-{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=provider,
                adjustments=EM,
                amount="185.00",
                **overrides,
            )
        )  # type: ignore[arg-type]


def later_denial(world: World, event_id: str, visit: str, denied: str, provider: str = A) -> None:
    world.send(
        claim(event_id, occurred_at=denied, service_date=visit, provider=provider, adjustments=EM, amount="185.00")
    )


# ---- opening --------------------------------------------------------------------------------------


def test_third_case_within_the_window_opens_the_pattern_for_clinician_and_billing() -> None:
    world = World()
    three_denials(world)
    opened = world.notifications("pattern_opened")
    assert sorted((n.audience, n.recipient.type, n.recipient.id) for n in opened) == [
        ("billing", "team", "billing"),
        ("clinician", "provider", A),
    ]
    assert all(n.created_at.isoformat() == "2026-02-16T09:00:00+00:00" for n in opened)
    assert world.pattern(A).status is PatternStatus.OPEN
    assert world.pattern(A).case_count == 3


def test_two_cases_do_not_open_a_pattern() -> None:
    world = World()
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    later_denial(world, "x2", "2026-01-12", "2026-02-09T09:00:00Z")
    assert world.notifications() == []
    assert world.pattern(A).status is PatternStatus.PENDING


def test_cases_spread_wider_than_the_window_do_not_open_a_pattern() -> None:
    world = World()
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    later_denial(world, "x2", "2026-02-20", "2026-03-20T09:00:00Z")
    later_denial(world, "x3", "2026-04-10", "2026-05-08T09:00:00Z")
    assert world.notifications() == []


def test_a_late_denial_that_fills_the_window_opens_the_pattern() -> None:
    world = World()
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    later_denial(world, "x3", "2026-03-01", "2026-03-20T09:00:00Z")
    assert world.notifications() == []
    later_denial(world, "x2", "2026-02-01", "2026-03-25T09:00:00Z")  # between the other two: 55 days in all
    assert len(world.notifications("pattern_opened")) == 2


def test_threshold_and_window_come_from_settings() -> None:
    world = World(pattern_threshold=2, window_days=10)
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    later_denial(world, "x2", "2026-01-20", "2026-02-09T09:00:00Z")
    assert world.notifications() == []
    later_denial(world, "x3", "2026-01-25", "2026-02-10T09:00:00Z")
    assert len(world.notifications("pattern_opened")) == 2


def test_administrative_root_causes_reach_billing_and_never_clinicians() -> None:
    world = World()
    for i in range(3):
        world.send(
            claim(
                f"e{i}",
                occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
                service_date=f"2026-01-0{i + 5}",
                provider=A,
                adjustments=[("CO", "27", "90.00")],
                remarks=["N30"],
                amount="90.00",
            )
        )
    world.advance("2026-06-30T00:00:00Z")
    assert world.notifications("pattern_opened", "billing")
    assert world.notifications(audience="clinician") == []


@pytest.mark.parametrize(
    "adjustments",
    [
        [("PR", "1", "50.00")],
        [("PR", "2", "10.00"), ("PR", "3", "25.00")],
        [("CO", "45", "60.00")],
        [("CO", "253", "2.00"), ("OA", "23", "8.00")],
    ],
)
def test_cost_sharing_and_contractual_adjustments_create_no_case(adjustments: list[tuple[str, str, str]]) -> None:
    world = World()
    for i in range(3):
        world.send(
            claim(
                f"p{i}",
                occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
                service_date=f"2026-01-0{i + 5}",
                provider=A,
                adjustments=adjustments,
                remarks=[],
            )
        )
    assert world.state.changes.cases == {}
    assert world.messages == []


# ---- cases --------------------------------------------------------------------------------------------


def test_a_resubmission_denied_again_updates_the_same_case() -> None:
    world = World()
    three_denials(world)
    world.send(
        claim(
            "again",
            occurred_at="2026-02-20T09:00:00Z",
            service_date="2026-01-19",
            provider=A,
            claim_id=f"CLM-{A}-2",
            adjustments=[("CO", "150", "200.00")],
            amount="200.00",
        )
    )
    pattern = world.pattern(A)
    assert pattern.case_count == 3
    assert pattern.amount_at_risk == Decimal("570.00")  # 185 + 185 + the resubmission's 200
    assert world.notifications("pattern_recurring") == []


def test_a_resubmission_under_another_provider_denied_again_is_a_case_of_that_provider() -> None:
    """A corrected rendering NPI: the denial names the other provider's documentation, and is keyed (and
    applied) by that provider's task, so it is a case of theirs; the first provider's case stays as it was."""
    world = World()
    three_denials(world)
    world.send(
        claim(
            "corrected",
            occurred_at="2026-02-20T09:00:00Z",
            service_date="2026-01-19",
            provider=B,
            claim_id=f"CLM-{A}-2",
            adjustments=[("CO", "150", "200.00")],
            amount="200.00",
        )
    )
    assert world.pattern(A).case_count == 3
    assert world.pattern(A).amount_at_risk == Decimal("555.00")
    assert world.pattern(B).case_count == 1
    assert world.pattern(B).amount_at_risk == Decimal("200.00")


def test_a_note_arriving_after_its_denial_links_to_the_case() -> None:
    world = World()
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    world.send(
        note(
            "n1",
            signed_at="2026-01-05T18:00:00Z",
            occurred_at="2026-02-03T00:00:00Z",
            service_date="2026-01-05",
            provider=A,
            encounter_id="ENC-x1",
        )
    )
    [case] = world.state.cases_of_encounter("ENC-x1")
    assert case.note_id == "NOTE-n1"


def test_a_denial_arriving_after_its_note_links_to_the_latest_signed_note() -> None:
    world = World()
    world.send(
        note("n1", signed_at="2026-01-05T18:00:00Z", service_date="2026-01-05", provider=A, encounter_id="ENC-x1")
    )
    world.send(
        note("n2", signed_at="2026-01-07T18:00:00Z", service_date="2026-01-05", provider=A, encounter_id="ENC-x1")
    )
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    [case] = world.state.cases_of_encounter("ENC-x1")
    assert case.note_id == "NOTE-n2"


def test_an_event_delivered_twice_is_applied_once() -> None:
    world = World()
    three_denials(world)
    before = len(world.messages)
    world.send(
        claim(f"{A}-0", occurred_at="2026-02-02T09:00:00Z", service_date="2026-01-05", provider=A, adjustments=EM)
    )
    assert len(world.messages) == before
    assert world.pattern(A).case_count == 3


# ---- after feedback -------------------------------------------------------------------------------------


def test_post_feedback_is_judged_by_service_date_not_denial_date() -> None:
    world = World()
    three_denials(world)  # feedback on 2026-02-16
    later_denial(world, "late", "2026-02-10", "2026-03-22T09:00:00Z")  # visit before feedback, denied after it
    assert world.pattern(A).post_feedback_cases == 0
    assert world.notifications("pattern_recurring") == []
    later_denial(world, "after", "2026-02-20", "2026-03-23T09:00:00Z")
    assert world.pattern(A).post_feedback_cases == 1
    assert sorted(n.audience for n in world.notifications("pattern_recurring")) == ["billing", "clinician"]


@pytest.mark.parametrize(
    ("post_feedback_cases", "expected"),
    [
        (1, []),
        (2, [(1, "recurrence_after_feedback")]),
        (3, [(1, "recurrence_after_feedback")]),
        (4, [(1, "recurrence_after_feedback"), (2, "recurrence_after_feedback")]),
        (6, [(1, "recurrence_after_feedback"), (2, "recurrence_after_feedback")]),
    ],
)
def test_recurrence_after_feedback_escalates_at_two_and_four(
    post_feedback_cases: int, expected: list[tuple[int, str]]
) -> None:
    world = World()
    three_denials(world)
    world.send(ack("ack", occurred_at="2026-02-17T09:00:00Z", provider=A))
    for i in range(post_feedback_cases):
        later_denial(world, f"r{i}", f"2026-02-{20 + i}", f"2026-03-{10 + i}T09:00:00Z")
    assert [(e.level, e.reason) for e in world.escalations()] == expected
    assert len(world.notifications("pattern_recurring")) == 2  # the first post-feedback case only
    # A documentation root cause: the clinical department lead, then the CDI director (routing.json).
    targets = {e.level: e.target.role for e in world.escalations()}
    assert targets.get(1, "department_lead") == "department_lead"
    assert targets.get(2, "cdi_director") == "cdi_director"
    assert {e.target.team for e in world.escalations()} <= {"clinical_documentation"}


def test_unacknowledged_feedback_gets_one_reminder_then_a_level_one_escalation_at_due_times() -> None:
    world = World()
    three_denials(world)
    world.advance("2026-04-30T00:00:00Z")
    reminders = world.notifications("reminder")
    assert sorted(n.audience for n in reminders) == ["billing", "clinician"]
    assert {n.created_at.isoformat() for n in reminders} == {"2026-02-23T09:00:00+00:00"}
    [escalation] = world.escalations("unacknowledged")
    assert (escalation.level, escalation.created_at.isoformat()) == (1, "2026-03-02T09:00:00+00:00")
    assert escalation.target.department == "Internal Medicine"


@pytest.mark.parametrize(
    ("acked_on", "reminders", "escalations"),
    [
        ("2026-02-17", 0, 0),  # before the reminder
        ("2026-02-25", 2, 0),  # after the reminder, before the escalation
        ("2026-03-05", 2, 1),  # too late: both already happened
    ],
)
def test_acknowledgement_stops_the_reminder_and_the_unacknowledged_escalation(
    acked_on: str, reminders: int, escalations: int
) -> None:
    world = World()
    three_denials(world)
    world.send(ack("ack", occurred_at=f"{acked_on}T09:00:00Z", provider=A))
    world.advance("2026-04-30T00:00:00Z")
    assert len(world.notifications("reminder")) == reminders
    assert len(world.escalations("unacknowledged")) == escalations
    assert world.pattern(A).acknowledged


def test_acknowledgement_by_notification_id_applies_to_the_pattern() -> None:
    world = World()
    three_denials(world)
    [clinician] = world.notifications("pattern_opened", "clinician")
    world.send(ack("ack", occurred_at="2026-02-17T09:00:00Z", notification_id=clinician.notification_id))
    world.advance("2026-04-30T00:00:00Z")
    assert world.notifications("reminder") == []


def test_amount_at_risk_reaching_the_threshold_escalates_to_level_two_once() -> None:
    world = World()
    for i in range(4):
        world.send(
            claim(
                f"k{i}",
                occurred_at=f"2026-02-1{i}T09:00:00Z",
                service_date=f"2026-01-1{i}",
                provider=A,
                procedure_code="27447",
                adjustments=[("CO", "50", "3500.00")],
                remarks=["N661"],
                amount="3500.00",
            )
        )
    [escalation] = world.escalations("amount_at_risk")
    assert escalation.level == 2 and escalation.target.role == "cdi_director"
    assert escalation.facts.amount_at_risk == Decimal("10500.00")


def test_systemic_needs_three_distinct_providers_of_one_department() -> None:
    world = World()
    three_denials(world, A)
    three_denials(world, A, procedure_code="99214")  # same provider, another procedure: still one provider
    three_denials(world, B, department="Cardiology")  # another department
    assert world.escalations("systemic") == []
    three_denials(world, C)
    assert world.escalations("systemic") == []
    three_denials(world, D)
    [systemic] = world.escalations("systemic")
    assert systemic.pattern_id is None and systemic.level == 2
    assert systemic.department == "Internal Medicine"
    assert systemic.facts.providers == sorted([A, C, D])
    three_denials(world, npi("111111111"))
    assert len(world.escalations("systemic")) == 1  # raised once per department and root cause


# ---- notes against open patterns ---------------------------------------------------------------------


def test_a_note_failing_the_check_gets_one_pre_bill_alert_even_for_two_failing_patterns() -> None:
    world = World()
    three_denials(world)
    for i, (visit, denied) in enumerate((("2026-01-06", "02-03"), ("2026-01-13", "02-10"), ("2026-01-20", "02-17"))):
        world.send(
            claim(
                f"dx{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=A,
                adjustments=[("CO", "11", "185.00")],
                remarks=[],
            )
        )
    failing = note(
        "n1",
        signed_at="2026-02-20T17:00:00Z",
        service_date="2026-02-20",
        provider=A,
        mdm_level="moderate",
        diagnosis_codes=[],
    )
    world.send(failing)
    world.send({**failing, "event_id": "n1-again", "signed_at": "2026-02-20T17:05:00Z"})
    alerts = world.notifications("pre_bill_alert")
    assert sorted(n.audience for n in alerts) == ["billing", "clinician"]


def test_a_note_signed_before_feedback_gets_no_alert_and_does_not_count_as_compliant() -> None:
    world = World()
    three_denials(world)
    world.send(
        note(
            "n0",
            signed_at="2026-02-10T17:00:00Z",
            occurred_at="2026-02-18T00:00:00Z",
            service_date="2026-02-10",
            provider=A,
            mdm_level="moderate",
        )
    )
    assert world.notifications("pre_bill_alert") == []
    assert world.pattern(A).compliant_notes == 0


def test_resolution_needs_quiet_days_compliant_notes_and_visits_old_enough_to_judge_then_a_new_episode() -> None:
    world = World()
    three_denials(world)
    world.send(ack("ack", occurred_at="2026-02-17T09:00:00Z", provider=A))
    for i, day in enumerate(("2026-03-02", "2026-03-03", "2026-03-04")):
        world.send(note(f"ok{i}", signed_at=f"{day}T17:00:00Z", service_date=day, provider=A, mdm_level="high"))
    # Quiet for 60 days on April 17 and three compliant notes, but the last one is not yet 45 days old.
    world.advance("2026-04-17T12:00:00Z")
    assert world.notifications("pattern_resolved") == []
    world.advance("2026-04-30T00:00:00Z")
    resolved = world.notifications("pattern_resolved")
    assert sorted(n.audience for n in resolved) == ["billing", "clinician"]
    assert {n.created_at.isoformat() for n in resolved} == {"2026-04-18T00:00:00+00:00"}  # March 4 + 45 days
    assert "working" in resolved[0].body + resolved[1].body
    first = world.pattern(A)
    assert first.status is PatternStatus.RESOLVED

    for i, (visit, denied) in enumerate((("2026-06-01", "06-20"), ("2026-06-08", "06-27"), ("2026-06-15", "07-04"))):
        later_denial(world, f"again{i}", visit, f"2026-{denied}T09:00:00Z")
    second = world.pattern(A)
    assert second.episode == 2 and second.pattern_id != first.pattern_id
    assert second.status is PatternStatus.OPEN and second.case_count == 3


def test_quiet_without_visits_is_dormant_billing_is_told_once_and_the_clinician_is_not_thanked() -> None:
    world = World()
    three_denials(world)
    world.send(ack("ack", occurred_at="2026-02-17T09:00:00Z", provider=A))
    world.advance("2026-08-01T00:00:00Z")  # the provider's visits stopped: silence, not evidence
    assert world.notifications("pattern_resolved") == []
    dormant = world.notifications("pattern_dormant")
    assert [(n.audience, n.created_at.isoformat()) for n in dormant] == [("billing", "2026-04-17T09:00:00+00:00")]
    assert "no visits to judge by" in dormant[0].body.lower() and "working" not in dormant[0].body
    assert world.pattern(A).status is PatternStatus.DORMANT


def test_a_dormant_pattern_resolves_once_later_visits_are_old_enough_to_judge() -> None:
    world = World()
    three_denials(world)
    world.advance("2026-05-01T00:00:00Z")
    assert world.pattern(A).status is PatternStatus.DORMANT
    for i, day in enumerate(("2026-05-04", "2026-05-05", "2026-05-06")):
        world.send(note(f"ok{i}", signed_at=f"{day}T17:00:00Z", service_date=day, provider=A, mdm_level="high"))
    world.advance("2026-07-01T00:00:00Z")
    resolved = world.notifications("pattern_resolved")
    assert {n.created_at.isoformat() for n in resolved} == {"2026-06-20T00:00:00+00:00"}  # May 6 + 45 days
    assert len(world.notifications("pattern_dormant")) == 1


def may_denials(world: World, provider: str) -> None:
    """Three 99215 visits in April, denied in May: opens on May 15 at 09:00."""
    for i, (visit, denied) in enumerate((("2026-04-06", "05-01"), ("2026-04-13", "05-08"), ("2026-04-20", "05-15"))):
        world.send(
            claim(
                f"{provider}-may-{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=provider,
                adjustments=EM,
                amount="185.00",
            )
        )


def test_dormant_patterns_do_not_count_as_open_for_systemic_until_they_recur() -> None:
    world = World()
    three_denials(world, A)
    three_denials(world, C)
    world.advance("2026-05-01T00:00:00Z")
    assert world.pattern(A).status is PatternStatus.DORMANT and world.pattern(C).status is PatternStatus.DORMANT
    may_denials(world, D)
    assert world.escalations("systemic") == []  # A and C are dormant: nobody is being asked to act on them
    later_denial(world, "a-back", "2026-05-18", "2026-06-01T09:00:00Z", provider=A)
    assert world.escalations("systemic") == []
    later_denial(world, "c-back", "2026-05-19", "2026-06-02T09:00:00Z", provider=C)
    [systemic] = world.escalations("systemic")
    assert systemic.facts.providers == sorted([A, C, D])


def test_a_withdrawn_pattern_leaves_the_departments_open_patterns() -> None:
    world = World()
    three_denials(world, A)
    three_denials(world, C)
    world.send(ack("dispute", occurred_at="2026-02-18T09:00:00Z", provider=A, response="disputed"))
    world.send(review("r1", occurred_at="2026-02-20T09:00:00Z", provider=A, outcome="withdrawn"))
    for i, (visit, denied) in enumerate((("2026-02-02", "02-23"), ("2026-02-09", "02-24"), ("2026-02-16", "02-25"))):
        world.send(
            claim(
                f"d-{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=D,
                adjustments=EM,
                amount="185.00",
            )
        )
    assert world.pattern(D).status is PatternStatus.OPEN
    assert world.escalations("systemic") == []  # C and D only: the withdrawn feedback is not a process gap


def test_a_later_case_continues_a_dormant_episode_as_a_recurrence() -> None:
    world = World()
    three_denials(world)
    world.advance("2026-05-01T00:00:00Z")
    dormant = world.pattern(A)
    assert dormant.status is PatternStatus.DORMANT
    later_denial(world, "back", "2026-05-04", "2026-06-01T09:00:00Z")
    again = world.pattern(A)
    assert again.pattern_id == dormant.pattern_id and again.status is PatternStatus.OPEN
    assert again.post_feedback_cases == 1 and again.case_count == 4
    assert len(world.notifications("pattern_recurring")) == 2


def test_visits_that_became_cases_are_not_exposure() -> None:
    world = World(resolve_compliant_notes=0)
    three_denials(world)
    for i, day in enumerate(("2026-02-23", "2026-02-24", "2026-02-25")):
        world.send(note(f"v{i}", signed_at=f"{day}T17:00:00Z", service_date=day, provider=A, encounter_id=f"ENC-v{i}"))
    assert len(world.pattern(A).exposure) == 3
    # Two of those visits come back denied for the same reason: one visit left to judge by.
    for i in (0, 1):
        world.send(
            claim(
                f"dv{i}",
                occurred_at=f"2026-03-2{i}T09:00:00Z",
                service_date=f"2026-02-2{3 + i}",
                provider=A,
                encounter_id=f"ENC-v{i}",
                adjustments=EM,
                amount="185.00",
            )
        )
    assert [e.encounter_id for e in world.pattern(A).exposure] == ["ENC-v2"]
    world.advance("2026-06-30T00:00:00Z")
    assert world.notifications("pattern_resolved") == []
    assert world.pattern(A).status is PatternStatus.DORMANT


def test_a_recent_visit_with_the_gap_postpones_resolution() -> None:
    world = World(resolve_compliant_notes=0, resolve_exposure=0)
    three_denials(world)
    later_denial(world, "recent", "2026-03-30", "2026-04-10T09:00:00Z")
    world.advance("2026-05-28T00:00:00Z")  # over 60 days after feedback, but the March 30 visit is recent
    assert world.notifications("pattern_resolved") == []
    world.advance("2026-06-01T00:00:00Z")
    assert world.notifications("pattern_resolved")[0].created_at.isoformat() == "2026-05-29T00:00:00+00:00"


def test_administrative_root_causes_resolve_on_quiet_alone() -> None:
    world = World()
    for i in range(3):
        world.send(
            claim(
                f"f{i}",
                occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
                service_date=f"2026-01-0{i + 5}",
                provider=A,
                adjustments=[("CO", "27", "100.00")],
                remarks=["N30"],
                procedure_code="97110",
            )
        )
    world.advance("2026-04-30T00:00:00Z")
    assert [n.audience for n in world.notifications("pattern_resolved")] == ["billing"]


def test_clinician_root_causes_without_a_check_still_need_visits_to_judge_by() -> None:
    world = World()
    for i in range(3):
        world.send(
            claim(
                f"f{i}",
                occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
                service_date=f"2026-01-0{i + 5}",
                provider=A,
                adjustments=[("CO", "151", "100.00")],
                remarks=[],
                procedure_code="97110",
            )
        )
    world.advance("2026-04-30T00:00:00Z")
    assert world.notifications("pattern_resolved") == []
    assert [n.audience for n in world.notifications("pattern_dormant")] == ["billing"]


# ---- the clock ------------------------------------------------------------------------------------------


def test_the_clock_never_goes_back_and_late_events_are_stamped_with_it() -> None:
    world = World()
    later_denial(world, "x1", "2026-01-05", "2026-02-02T09:00:00Z")
    later_denial(world, "x2", "2026-01-12", "2026-02-09T09:00:00Z")
    later_denial(world, "x3", "2026-01-19", "2026-02-01T09:00:00Z")  # older than the clock
    opened = world.notifications("pattern_opened")
    assert {n.created_at.isoformat() for n in opened} == {"2026-02-09T09:00:00+00:00"}


def test_timers_due_before_an_event_fire_first_in_due_order() -> None:
    world = World()
    three_denials(world, A)
    three_denials(world, B, department="Cardiology")
    fired = world.send(note("n", signed_at="2026-03-10T00:00:00Z", service_date="2026-03-10", provider=C))
    stamps = [m.created_at for m in fired]
    assert stamps == sorted(stamps) and len(fired) == 2 * 2 + 2  # two reminders each, two escalations


# ---- words -----------------------------------------------------------------------------------------------


def test_clinician_messages_name_the_gap_without_money_or_coding_advice() -> None:
    world = World()
    three_denials(world)
    later_denial(world, "r1", "2026-02-20", "2026-03-10T09:00:00Z")
    world.send(note("n1", signed_at="2026-03-11T17:00:00Z", service_date="2026-03-11", provider=A, mdm_level="low"))
    clinician = world.notifications(audience="clinician")
    assert {n.kind for n in clinician} == {"pattern_opened", "reminder", "pattern_recurring", "pre_bill_alert"}
    for message in clinician:
        text = " ".join([message.title, message.body, message.guidance]).lower()
        for forbidden in ("$", "dollar", "payment", "paid", "revenue", "bill as", "code as", "reimburse"):
            assert forbidden not in text, (message.kind, forbidden)
        assert message.pattern.amount_at_risk is None and message.pattern.reason_codes is None
    billing = world.notifications("pattern_opened", "billing")[0]
    assert "$555.00" in billing.body and "CO-150" in billing.body


# ---- disputes and reviews -------------------------------------------------------------------------------


def disputed(world: World, comment: str = "The visits were time-based; the minutes are in the note.") -> None:
    three_denials(world)  # opens on Feb 16 09:00
    world.send(ack("dispute", occurred_at="2026-02-18T09:00:00Z", provider=A, response="disputed", comment=comment))


def test_a_dispute_opens_a_review_for_the_owner_team_and_pauses_reminders() -> None:
    world = World()
    disputed(world)
    reviews = world.notifications("review_requested")
    # The owner team of em_level_unsupported (codebook `owner`, routing.json), as for its escalations.
    assert [(n.audience, n.recipient.type, n.recipient.id) for n in reviews] == [
        ("billing", "team", "clinical_documentation")
    ]
    assert "time-based" in reviews[0].body
    world.advance("2026-03-03T00:00:00Z")  # past the reminder (Feb 23) and the unacknowledged delay (Mar 2)
    assert world.notifications("reminder") == [] and world.escalations("unacknowledged") == []
    assert world.pattern(A).disputes == 1 and not world.pattern(A).acknowledged


def test_an_unanswered_dispute_escalates_to_the_owner_team_lead_after_the_unacknowledged_delay() -> None:
    world = World()
    disputed(world)
    world.advance("2026-03-10T00:00:00Z")
    [escalation] = world.escalations("dispute_unanswered")
    # The owner team's level-1 role (routing.json), the same ownership every escalation uses.
    assert escalation.level == 1 and escalation.target.role == "department_lead"
    assert escalation.target.team == "clinical_documentation"
    assert escalation.created_at.isoformat() == "2026-03-04T09:00:00+00:00"
    assert "dispute" in escalation.summary and "the clinicians, with CDI support" in escalation.summary


def test_a_dispute_of_a_coding_owned_pattern_goes_to_coding_and_escalates_to_its_manager() -> None:
    world = World()
    for i, (visit, denied) in enumerate((("2026-01-05", "02-02"), ("2026-01-12", "02-09"), ("2026-01-19", "02-16"))):
        # CARC 4: modifier_or_code_invalid, owned by coding
        world.send(
            claim(
                f"m-{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=A,
                adjustments=[("CO", "4", "185.00")],
                amount="185.00",
            )
        )
    world.send(
        ack(
            "dispute",
            occurred_at="2026-02-18T09:00:00Z",
            provider=A,
            root_cause="modifier_or_code_invalid",
            response="disputed",
        )
    )
    [requested] = world.notifications("review_requested")
    assert (requested.recipient.type, requested.recipient.id) == ("team", "coding")
    world.advance("2026-03-10T00:00:00Z")
    [escalation] = world.escalations("dispute_unanswered")
    assert (escalation.target.role, escalation.target.team) == ("coding_manager", "coding")


def test_an_upheld_review_tells_the_clinician_why_and_resumes_the_loop() -> None:
    world = World()
    disputed(world)
    world.send(
        review(
            "r1",
            occurred_at="2026-02-20T09:00:00Z",
            provider=A,
            outcome="upheld",
            comment="Time was recorded as 25 minutes.",
        )
    )
    upheld = world.notifications("feedback_upheld", "clinician")
    assert len(upheld) == 1 and "25 minutes" in upheld[0].body and "stands" in upheld[0].body
    world.advance("2026-03-10T00:00:00Z")
    reminders = world.notifications("reminder", "clinician")
    assert [n.created_at.isoformat() for n in reminders] == ["2026-02-27T09:00:00+00:00"]  # 7 days after review
    assert world.escalations("dispute_unanswered") == []
    assert world.pattern(A).status is PatternStatus.OPEN


def test_a_withdrawn_review_closes_the_pattern_and_tells_the_clinician() -> None:
    world = World()
    disputed(world)
    world.send(review("r1", occurred_at="2026-02-20T09:00:00Z", provider=A, outcome="withdrawn"))
    withdrawn = world.notifications("feedback_withdrawn", "clinician")
    assert len(withdrawn) == 1 and "withdrawn" in withdrawn[0].body
    assert world.pattern(A).status is PatternStatus.WITHDRAWN
    world.advance("2026-06-30T00:00:00Z")
    assert world.notifications("reminder") == [] and world.escalations() == []
    assert world.notifications("pattern_dormant") == [] and world.notifications("pattern_resolved") == []


def test_a_review_without_a_dispute_changes_nothing() -> None:
    world = World()
    three_denials(world)
    assert world.send(review("r1", occurred_at="2026-02-20T09:00:00Z", provider=A, outcome="withdrawn")) == []
    assert world.pattern(A).status is PatternStatus.OPEN


@pytest.mark.parametrize("response", ["maybe-later", "ACCEPTED", "agree"])
def test_an_acknowledgement_with_an_unknown_response_is_rejected_naming_the_field(response: str) -> None:
    from schemas import InvalidEvent, decode_event

    with pytest.raises(InvalidEvent) as rejected:
        decode_event(json.dumps(ack("a", occurred_at="2026-02-18T09:00:00Z", provider=A, response=response)))
    assert rejected.value.reason == "invalid event: response: literal_error"


# ---- pre-bill alerts a clinician can act on ----------------------------------------------------------------


def test_a_pre_bill_alert_names_the_note_and_what_its_check_found_missing() -> None:
    world = World()
    three_denials(world)
    world.send(
        note(
            "n1",
            signed_at="2026-02-20T17:00:00Z",
            service_date="2026-02-20",
            provider=A,
            encounter_id="ENC-77",
            mdm_level="moderate",
        )
    )
    clinician = world.notifications("pre_bill_alert", "clinician")[0]
    assert clinician.note is not None
    assert (clinician.note.note_id, clinician.note.encounter_id, clinician.note.service_date.isoformat()) == (
        "NOTE-n1",
        "ENC-77",
        "2026-02-20",
    )
    assert clinician.note.missing == ["mdm_below_level", "time_not_recorded"]
    assert "NOTE-n1" in clinician.body and "ENC-77" in clinician.body and "2026-02-20" in clinician.body
    assert "the total time on the date of the visit is not recorded" in clinician.body
    assert "documentation supports" in clinician.body and "no change needed" in clinician.body
    billing = world.notifications("pre_bill_alert", "billing")[0]
    assert billing.note == clinician.note and "NOTE-n1" in billing.body
    assert all(n.note is None for n in world.notifications() if n.kind != "pre_bill_alert")


def test_no_change_needed_answers_an_alert_without_accepting_or_disputing_the_feedback() -> None:
    world = World()
    three_denials(world)
    world.send(note("n1", signed_at="2026-02-20T17:00:00Z", service_date="2026-02-20", provider=A, mdm_level="low"))
    alert = world.notifications("pre_bill_alert", "clinician")[0]
    world.send(
        ack("a1", occurred_at="2026-02-21T09:00:00Z", notification_id=alert.notification_id, response="not_applicable")
    )
    pattern = world.pattern(A)
    assert pattern.alerts_no_change == 1 and not pattern.acknowledged and pattern.disputes == 0
    world.advance("2026-02-24T00:00:00Z")
    assert len(world.notifications("reminder", "clinician")) == 1  # the feedback itself still awaits an answer


def test_clinician_e_m_guidance_is_neutral() -> None:
    world = World()
    three_denials(world)
    opened = world.notifications("pattern_opened", "clinician")[0]
    assert "select the level that the documentation supports" in opened.guidance.lower()
    assert "neither higher nor lower" in opened.guidance


# ---- both directions of E/M level ------------------------------------------------------------------------


def undercoded_note(world: World, i: int, day: str, provider: str = A, **overrides: object) -> list[object]:
    return world.send(  # type: ignore[return-value]
        note(
            f"u{i}",
            signed_at=f"{day}T17:00:00Z",
            service_date=day,
            provider=provider,
            procedure_codes=["99213"],
            mdm_level="moderate",  # supports 99214
            **overrides,  # type: ignore[arg-type]
        )
    )


def test_notes_whose_documentation_supports_a_higher_level_form_an_undercoding_pattern_without_denials() -> None:
    world = World()
    undercoded_note(world, 1, "2026-03-02")
    undercoded_note(world, 2, "2026-03-09")
    assert world.notifications() == []
    undercoded_note(world, 3, "2026-03-16")
    pattern = world.pattern(A, "em_level_undercoded", "99213")
    assert pattern.status is PatternStatus.OPEN and pattern.case_count == 3
    assert pattern.amount_at_risk == Decimal("120.00")  # 3 x (99214 130.00 - 99213 90.00), an estimate
    clinician = world.notifications("pattern_opened", "clinician")[0]
    billing = world.notifications("pattern_opened", "billing")[0]
    assert "select the level that the documentation supports" in clinician.guidance.lower()
    assert "found in a review of signed notes" in clinician.body and "came back" not in clinician.body
    assert "$120.00 estimated left unbilled" in billing.body and "supports-99214" in billing.body
    assert billing.recipient.id == "billing"


def test_an_addendum_to_an_undercoded_visit_is_the_same_case() -> None:
    world = World()
    undercoded_note(world, 1, "2026-03-02", encounter_id="ENC-1")
    undercoded_note(world, 2, "2026-03-02", encounter_id="ENC-1")
    undercoded_note(world, 3, "2026-03-09")
    assert world.pattern(A, "em_level_undercoded", "99213").case_count == 2


def test_a_visit_two_clinicians_sign_is_a_case_of_each_with_their_own_note() -> None:
    """A resident's and an attending's notes of one visit both support a higher level: a case of each, each
    pointing at its own author's note (whether or not their NPIs share a task)."""
    world = World()
    undercoded_note(world, 1, "2026-03-02", provider=A, encounter_id="ENC-1")
    undercoded_note(world, 2, "2026-03-02", provider=B, encounter_id="ENC-1")  # latest on the tie (note id)
    cases = {case.provider_npi: case for case in world.state.cases_of_encounter("ENC-1")}
    assert set(cases) == {A, B}
    assert cases[A].note_id == cases[A].claim_id == "NOTE-u1" and cases[B].note_id == cases[B].claim_id == "NOTE-u2"


def test_a_note_at_its_supported_level_is_no_undercoding_case() -> None:
    world = World()
    for i, day in enumerate(("2026-03-02", "2026-03-09", "2026-03-16")):
        world.send(
            note(
                f"ok{i}",
                signed_at=f"{day}T17:00:00Z",
                service_date=day,
                provider=A,
                procedure_codes=["99214"],
                mdm_level="moderate",
                total_time_minutes=35,
            )
        )
    assert world.state.current_pattern(PatternKey(A, RootCause.EM_LEVEL_UNDERCODED, "99214")) is None
