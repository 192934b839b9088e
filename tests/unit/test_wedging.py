"""No single value or fault may stop the engine for everyone (issue #10: "Two messages that stop everything")."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.model import PatternStatus
from engine.domain.rules import MAX_TOTAL
from schemas import PatternSummary
from tests.support.events import claim, npi
from tests.support.world import World

A = npi("123456789")
B = npi("198765432")
BIG = "99999999.99"  # the largest amount one adjustment may carry


def _three(world: World, provider: str, amount: str) -> None:
    for i, (visit, denied) in enumerate((("2026-01-05", "02-02"), ("2026-01-12", "02-09"), ("2026-01-19", "02-16"))):
        world.send(
            claim(
                f"{provider}-{i}",
                occurred_at=f"2026-{denied}T09:00:00Z",
                service_date=visit,
                provider=provider,
                adjustments=[("CO", "150", amount)],
                amount=amount,
            )
        )


def test_totals_saturate_so_every_later_message_can_still_be_built() -> None:
    world = World()
    _three(world, A, BIG)
    for i in range(30):  # cases dated before the feedback raise the total without any message of their own
        world.send(
            claim(
                f"late-{i}",
                occurred_at="2026-02-20T09:00:00Z",
                service_date="2026-01-20",
                provider=A,
                amount=BIG,
                adjustments=[("CO", "150", BIG)],
            )
        )
    assert world.pattern(A).amount_at_risk > Decimal(BIG) * 30  # far past what one amount may be
    world.pattern(A).amount_at_risk = MAX_TOTAL - 1
    world.send(
        claim(
            "one-more",
            occurred_at="2026-02-21T09:00:00Z",
            service_date="2026-01-21",
            provider=A,
            amount=BIG,
            adjustments=[("CO", "150", BIG)],
        )
    )
    assert world.pattern(A).amount_at_risk == MAX_TOTAL

    world.advance("2026-03-20T00:00:00Z")  # the reminder and the unacknowledged escalation are built now

    assert world.notifications("reminder")
    unacked = world.escalations("unacknowledged")
    assert unacked and unacked[0].facts.amount_at_risk == MAX_TOTAL
    for message in world.messages:  # each one survives publication and a consumer's validation
        model = type(message)
        assert model.model_validate_json(message.model_dump_json()) == message


def test_a_fault_in_one_patterns_timer_quarantines_that_pattern_and_nothing_else() -> None:
    world = World()
    _three(world, A, "185.00")
    _three(world, B, "185.00")
    compose = world.engine.compose
    original = compose.notification

    def broken_for_a(kind, audience, pattern, now, *rest):  # type: ignore[no-untyped-def]
        if pattern.provider_npi == A and kind == "reminder":
            raise ArithmeticError("a defect in building one pattern's reminder")
        return original(kind, audience, pattern, now, *rest)

    object.__setattr__(compose, "notification", broken_for_a)

    # The event that moves the clock past both reminders is B's, and it still applies.
    world.send(claim("b-later", occurred_at="2026-03-01T09:00:00Z", service_date="2026-02-27", provider=B))

    quarantined = world.state.quarantined
    assert [pattern_id for pattern_id, _ in quarantined] == [world.pattern(A).pattern_id]
    assert "ArithmeticError" in quarantined[0][1]
    assert world.pattern(A).quarantine and world.pattern(A).next_due_at is None
    assert world.pattern(A).status is PatternStatus.OPEN
    reminded = {m.pattern.provider_npi for m in world.notifications("reminder")}
    assert reminded == {B}
    assert world.pattern(B).case_count == 4  # B's own event applied

    world.advance("2026-04-01T00:00:00Z")  # later timers of A stay stopped; B's go on
    assert all(e.pattern_id != world.pattern(A).pattern_id for e in world.escalations("unacknowledged"))
    assert any(e.pattern_id == world.pattern(B).pattern_id for e in world.escalations("unacknowledged"))


def test_outbound_totals_hold_what_the_engine_saturates_at() -> None:
    summary = PatternSummary(
        provider_npi=A,
        root_cause="bundling",
        procedure_code="99215",
        department="X",
        case_count=1,
        post_feedback_cases=0,
        status="open",
        amount_at_risk=MAX_TOTAL,
    )
    assert PatternSummary.model_validate_json(summary.model_dump_json()).amount_at_risk == MAX_TOTAL
