"""The router: routing-tree decisions, digests, silences and inhibition, on event time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from engine.domain.codebook import CodeBook
from engine.domain.messages import Composer, load_wording
from engine.domain.model import EvidenceRef, Pattern, PatternStatus
from engine.domain.routing import Message, Router, RoutingState, decide, route_stream
from engine.domain.routing_config import RoutingConfig
from engine.simulate.world import SimulationConfig, simulate
from engine.volume import Spread, render_text, targets, volume
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification, FeedbackSilence, RootCause
from tests.support.events import npi
from tests.support.world import World  # noqa: E402

CONFIG = RoutingConfig.load()
COMPOSE = Composer(load_wording(), "billing", 60, CONFIG)
A, B, C = npi("100000001"), npi("100000002"), npi("100000003")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, days=days)


def pattern(
    provider: str = A,
    root_cause: RootCause = RootCause.EM_LEVEL_UNSUPPORTED,
    code: str = "99215",
    department: str = "Internal Medicine",
    payer: str = "60054",
) -> Pattern:
    return Pattern(
        pattern_id=f"p-{provider}-{root_cause.value}-{code}",
        provider_npi=provider,
        root_cause=root_cause,
        procedure_code=code,
        episode=1,
        department=department,
        status=PatternStatus.OPEN,
        case_count=3,
        amount_at_risk=Decimal("630.00"),
        reason_codes=["CO-150", "M25"],
        evidence=[
            EvidenceRef(f"CLM-{provider}-{i}", f"ENC-{i}", T0.date() - timedelta(days=30 + i), payer) for i in range(3)
        ],
        opened_at=T0 - timedelta(days=1),
        provider_name="A. Rivera" if provider == A else None,
    )


def note_for(p: Pattern, kind: str, audience: str, when: datetime, about: str = "") -> FeedbackNotification:
    return COMPOSE.notification(kind, audience, p, when, about)  # type: ignore[arg-type]


def escalation(
    p: Pattern, when: datetime, level: int = 1, reason: str = "recurrence_after_feedback"
) -> EscalationRaised:
    return COMPOSE.escalation(level, reason, [p], p.department, p.root_cause, when)  # type: ignore[arg-type]


def systemic(patterns: list[Pattern], when: datetime) -> EscalationRaised:
    first = patterns[0]
    return COMPOSE.escalation(2, "systemic", patterns, first.department, first.root_cause, when)


class Desk:
    """A router and its state, fed one message at a time."""

    def __init__(self, config: RoutingConfig = CONFIG) -> None:
        self.router = Router(config)
        self.state = RoutingState()
        self.out: list[Any] = []

    def route(self, message: Message, when: datetime | None = None) -> Any:
        routed = self.router.route(message, self.state, when or message.created_at)
        self.out += routed
        return routed[-1] if not isinstance(routed[-1], FeedbackDigest) else routed[-2]

    def advance(self, when: datetime) -> list[FeedbackDigest]:
        flushed = self.router.advance(when, self.state)
        self.out += flushed
        return flushed  # type: ignore[return-value]

    def digests(self) -> list[FeedbackDigest]:
        return [m for m in self.out if isinstance(m, FeedbackDigest)]


# ---- the decision, as a table ---------------------------------------------------------------------------

DIGEST = CONFIG.routes_by_name["clinician feedback"]  # group_wait 2h, group_interval 1d
SEND = CONFIG.routes_by_name["clinician pre-bill alert"]  # repeat_interval 1d


@pytest.mark.parametrize(
    ("route", "kinds", "first_pending", "last_notified", "now", "expected"),
    [
        (DIGEST, [], None, None, at(5), "do_not_notify"),  # nothing pending
        (DIGEST, ["pattern_opened"], at(0), None, at(1), "do_not_notify"),  # within group_wait
        (DIGEST, ["pattern_opened"], at(0), None, at(2), "first_notification"),  # group_wait elapsed
        (DIGEST, ["reminder"], at(10), at(0), at(12), "do_not_notify"),  # within group_interval of the last
        (DIGEST, ["reminder"], at(10), at(0), at(24), "new_alerts"),  # group_interval elapsed
        (DIGEST, ["pattern_resolved"], at(10), at(0), at(24), "resolved"),  # only good news pending
        (DIGEST, ["pattern_resolved", "reminder"], at(10), at(0), at(24), "new_alerts"),
        (DIGEST, ["reminder"], at(100), at(0), at(101), "do_not_notify"),  # an idle group waits group_wait again
        (SEND, ["pre_bill_alert"], at(0), None, at(0), "first_notification"),  # a send route sends at once
        (SEND, ["pre_bill_alert"], at(20), at(0), at(20), "do_not_notify"),  # within repeat_interval
        (SEND, ["pre_bill_alert"], at(24), at(0), at(24), "repeat_elapsed"),
    ],
)
def test_notification_decision(
    route: Any, kinds: list[str], first_pending: Any, last_notified: Any, now: datetime, expected: str
) -> None:
    assert decide(route, kinds, first_pending, last_notified, now) == expected


# ---- routes ---------------------------------------------------------------------------------------------


def test_clinician_gets_one_pre_bill_alert_a_day_billing_gets_each_in_its_worklist() -> None:
    desk = Desk()
    p, q = pattern(), pattern(code="99214")
    first = desk.route(note_for(p, "pre_bill_alert", "clinician", at(0), "NOTE-1"))
    second = desk.route(note_for(q, "pre_bill_alert", "clinician", at(3), "NOTE-2"))
    next_day = desk.route(note_for(p, "pre_bill_alert", "clinician", at(24), "NOTE-3"))
    assert (first.delivery, second.delivery, next_day.delivery) == ("send", "held", "send")
    assert second.delivery_reason == "rate_limited:clinician pre-bill alert"
    desk = Desk()  # a fresh clock for the billing side
    billing = [desk.route(note_for(p, "pre_bill_alert", "billing", at(h), f"NOTE-{h}")) for h in (0, 1)]
    assert [b.delivery for b in billing] == ["digest", "digest"]
    desk.advance(at(7))
    worklist, later = desk.digests()  # routing the second alert flushed the first group, due at 00:30
    assert worklist.recipient.id == "billing" and worklist.created_at == at(0.5)  # group_wait 30m
    assert worklist.covers == [billing[0].notification_id]
    assert later.covers == [billing[1].notification_id] and later.created_at == at(6.5)  # group_interval 6h


def test_feedback_is_digested_once_a_day_per_clinician_with_patterns_evidence_and_ids() -> None:
    desk = Desk()
    p, q = pattern(), pattern(code="99214")
    opened = desk.route(note_for(p, "pattern_opened", "clinician", at(0)))
    other = desk.route(note_for(q, "pattern_opened", "clinician", at(1)))
    reminder = desk.route(note_for(p, "reminder", "clinician", at(1.5)))
    assert {m.delivery for m in (opened, other, reminder)} == {"digest"}
    [digest] = desk.advance(at(3))
    assert digest.created_at == at(2) and digest.recipient.id == A and digest.audience == "clinician"
    assert digest.covers == [opened.notification_id, other.notification_id, reminder.notification_id]
    assert [d.pattern_id for d in digest.patterns] == [p.pattern_id, q.pattern_id]
    assert digest.patterns[0].message_ids == [opened.notification_id, reminder.notification_id]
    assert [e.claim_id for e in digest.patterns[0].evidence] == [e.claim_id for e in opened.evidence]
    assert "$" not in digest.body and digest.patterns[0].pattern.amount_at_risk is None  # type: ignore[union-attr]
    resolved = desk.route(note_for(p, "pattern_resolved", "clinician", at(4)))
    assert desk.advance(at(25)) == []  # at most one digest a day
    [good_news] = desk.advance(at(26))
    assert good_news.created_at == at(26) and good_news.covers == [resolved.notification_id]
    assert good_news.reason == "resolved"


@pytest.mark.parametrize("edit", ["group_wait raised", "route renamed"])
def test_a_routing_json_edit_lets_digests_already_scheduled_go_out_when_scheduled(edit: str) -> None:
    """Digests pending in the store when routing.json changes (serve restarted with the edit) go out as
    scheduled, under the route they were grouped by; before, every stage pass failed on them from then on."""
    desk = Desk()
    opened = desk.route(note_for(pattern(), "pattern_opened", "clinician", at(0)))
    data = json.loads(resources.files("engine.domain").joinpath("data/routing.json").read_text("utf-8"))
    clinicians = next(r for r in data["route"]["routes"] if r["name"] == "clinician feedback")
    if edit == "route renamed":
        clinicians["name"] = "clinicians"
    else:
        clinicians["group_wait"] = "3h"
    desk.router = Router(RoutingConfig.from_dict(data, CodeBook.load()))
    [digest] = desk.advance(at(3))
    assert digest.created_at == at(2) and digest.covers == [opened.notification_id]
    assert digest.route == "clinician feedback" and digest.reason == "first_notification"
    later = desk.route(note_for(pattern(), "reminder", "clinician", at(4)))
    assert later.delivery == "digest"  # what comes after the edit follows it


def test_digests_are_deterministic_in_ids_and_bytes() -> None:
    def run() -> list[str]:
        stream: list[Message] = [
            note_for(pattern(), "pattern_opened", "clinician", at(0)),
            note_for(pattern(), "pattern_opened", "billing", at(0)),
            escalation(pattern(), at(2)),
            note_for(pattern(B), "pattern_opened", "clinician", at(0)),
        ]
        return [m.model_dump_json() for m in route_stream(reversed(stream))]

    assert run() == run()
    ids = [json.loads(line).get("digest_id") for line in run()]
    assert len({i for i in ids if i}) == 4  # two clinicians, billing, the department lead


def test_a_redelivered_message_keeps_its_decision_and_is_not_listed_twice() -> None:
    desk = Desk()
    message = note_for(pattern(), "pattern_opened", "clinician", at(0))
    desk.route(message)
    again = desk.route(message, at(1))
    assert again.delivery == "digest"
    [digest] = desk.advance(at(3))
    assert digest.covers == [message.notification_id]


def test_escalations_to_leaders_are_digested_systemic_ones_sent_at_once() -> None:
    desk = Desk()
    one = desk.route(escalation(pattern(), at(0)))
    assert one.delivery == "digest"
    broad = desk.route(systemic([pattern(A), pattern(B), pattern(C)], at(0.5)))
    assert broad.delivery == "send"
    [digest] = desk.advance(at(2))
    assert digest.recipient.type == "role" and digest.recipient.id == "department_lead@Internal Medicine"
    assert digest.audience == "leadership" and digest.covers == [one.escalation_id]


# ---- inhibition -----------------------------------------------------------------------------------------


def test_a_systemic_escalation_holds_per_provider_escalations_of_its_pair_until_closed() -> None:
    desk = Desk()
    before = desk.route(escalation(pattern(A), at(0)))
    desk.route(systemic([pattern(A), pattern(B), pattern(C)], at(1)))
    during = desk.route(escalation(pattern(B), at(2), level=2))
    other_cause = desk.route(escalation(pattern(B, RootCause.RECORDS_MISSING), at(2)))
    other_department = desk.route(escalation(pattern(C, department="Cardiology"), at(2)))
    assert before.delivery == "digest"
    assert during.delivery == "held"
    assert during.delivery_reason == "inhibited:systemic escalation covers its providers"
    assert other_cause.delivery == other_department.delivery == "digest"
    desk.router.systemic_closed("Internal Medicine", "em_level_unsupported", at(3), desk.state)
    assert desk.route(escalation(pattern(C), at(4))).delivery == "digest"
    assert desk.state.take_changes().inhibitions  # the stage persists openings and closings


def test_a_systemic_escalation_does_not_hold_an_unanswered_dispute_of_its_pair() -> None:
    # A process gap across providers does not answer one clinician's dispute: its owner team still must.
    desk = Desk()
    desk.route(systemic([pattern(A), pattern(B), pattern(C)], at(1)))
    disputed = desk.route(escalation(pattern(B), at(2), reason="dispute_unanswered"))
    assert disputed.delivery == "digest" and disputed.delivery_reason == "digest:escalations"


def test_the_stage_can_open_an_inhibition_without_the_message() -> None:
    desk = Desk()
    desk.router.systemic_opened("Internal Medicine", "em_level_unsupported", at(0), desk.state)
    assert desk.route(escalation(pattern(), at(1))).delivery == "held"
    assert desk.route(note_for(pattern(), "pattern_recurring", "clinician", at(1))).delivery == "digest"


# ---- silences -------------------------------------------------------------------------------------------


def silence(silence_id: str = "s-1", action: str = "set", occurred: datetime = T0, **fields: Any) -> FeedbackSilence:
    body: dict[str, Any] = {
        "event_type": "feedback.silence",
        "schema_version": 1,
        "event_id": f"{silence_id}-{action}-{occurred.isoformat()}",
        "occurred_at": occurred.isoformat(),
        "source": "ops-console",
        "silence_id": silence_id,
        "action": action,
        "author": "j.ops",
        "reason": "payer portal outage",
        **fields,
    }
    return FeedbackSilence.model_validate(body)


@pytest.mark.parametrize(
    ("matchers", "silenced"),
    [
        ({"payer_id": ["60054"]}, True),  # every denial in the evidence came from the payer
        ({"payer_id": ["99999"]}, False),
        ({"provider_npi": [A]}, True),
        ({"provider_npi": [B]}, False),
        ({"department": ["Internal Medicine"], "root_cause": ["em_level_unsupported"]}, True),
        ({"department": ["Internal Medicine"], "root_cause": ["eligibility"]}, False),  # all matchers must hold
        ({"procedure_code": ["99214", "99215"]}, True),
    ],
)
def test_silence_matchers(matchers: dict[str, list[str]], silenced: bool) -> None:
    desk = Desk()
    desk.router.apply_silence(silence(matchers=matchers, ends_at=at(48).isoformat()), desk.state)
    routed = desk.route(note_for(pattern(), "pattern_opened", "billing", at(1)))
    assert (routed.delivery == "held") is silenced
    if silenced:
        assert routed.delivery_reason == "silence:s-1"


def test_a_payer_silence_does_not_hide_a_pattern_other_payers_also_denied() -> None:
    desk = Desk()
    desk.router.apply_silence(silence(matchers={"payer_id": ["60054"]}, ends_at=at(48).isoformat()), desk.state)
    mixed = pattern()
    mixed.evidence = [*mixed.evidence, EvidenceRef("CLM-x", "ENC-x", T0.date(), "77777")]
    assert desk.route(note_for(mixed, "pattern_opened", "billing", at(1))).delivery == "digest"


def test_silence_window_start_end_and_ended_early() -> None:
    desk = Desk()
    rule = {"provider_npi": [A]}
    desk.router.apply_silence(
        silence(matchers=rule, starts_at=at(10).isoformat(), ends_at=at(100).isoformat()), desk.state
    )
    kinds = iter(["pattern_opened", "reminder", "pattern_recurring", "pattern_resolved"])

    def delivery(hours: float) -> str:
        return str(desk.route(note_for(pattern(), next(kinds), "billing", at(hours))).delivery)

    assert delivery(5) == "digest"  # before it starts
    assert delivery(20) == "held"
    desk.router.apply_silence(silence(action="expire", occurred=at(30)), desk.state)
    assert delivery(31) == "digest"  # ended early
    assert desk.state.silences["s-1"].ends_at == at(30)
    desk.router.apply_silence(silence(action="expire", occurred=at(200)), desk.state)
    assert desk.state.silences["s-1"].ends_at == at(30)  # expiring never extends a silence
    assert delivery(120) == "digest"


def test_silences_hold_escalations_too() -> None:
    desk = Desk()
    desk.router.apply_silence(silence(matchers={"provider_npi": [A]}, ends_at=at(48).isoformat()), desk.state)
    assert desk.route(escalation(pattern(A), at(1))).delivery == "held"
    assert desk.route(systemic([pattern(A), pattern(B), pattern(C)], at(1))).delivery == "send"  # not all of them


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"matchers": {}, "ends_at": "2026-03-05T00:00:00Z"}, "at least one matcher"),
        ({"ends_at": "2026-03-05T00:00:00Z"}, "needs matchers and ends_at"),
        ({"matchers": {"payer_id": ["1"]}}, "needs matchers and ends_at"),
        ({"matchers": {"payer_id": ["1"]}, "ends_at": "2026-03-01T00:00:00Z"}, "ends_at must be after"),
        ({"matchers": {"provider_npi": ["1234567890"]}, "ends_at": "2026-03-05T00:00:00Z"}, "not a valid NPI"),
    ],
)
def test_invalid_silences_are_rejected_with_a_reason(fields: dict[str, Any], problem: str) -> None:
    from schemas import InvalidEvent, decode_silence

    body = {
        "event_type": "feedback.silence",
        "schema_version": 1,
        "event_id": "s",
        "occurred_at": "2026-03-02T09:00:00Z",
        "source": "ops",
        "silence_id": "s-1",
        "author": "j.ops",
        "reason": "outage",
        **fields,
    }
    with pytest.raises(InvalidEvent) as rejected:
        decode_silence(json.dumps(body))
    assert problem in rejected.value.reason


# ---- the targets on a small simulated world -----------------------------------------------------


def test_routing_meets_the_volume_and_ownership_targets_on_a_simulated_world() -> None:
    world = simulate(SimulationConfig(seed=5, providers=16, days=60))
    rules = World()  # the rules and the department stage (systemic escalations) on one clock
    for event in world.events:
        rules.send(event)
    per_fact: list[Message] = list(rules.messages)
    assert not targets(per_fact).met()  # every message sent on its own: the loop would be muted
    routed = route_stream(per_fact)
    measured = targets(routed)
    assert measured.administrative_to_department_leads == 0
    assert measured.clinician_told_claims_without_clinician == 0
    assert measured.clinician_max_per_day <= 2
    assert measured.clinician_median_per_active_week <= 3
    assert measured.provider_escalations_sent_while_systemic_open == 0
    figures = volume(routed)
    assert figures.of("leadership").inhibited > 0 and figures.of("clinician").rate_limited > 0
    # The per-fact messages stay as the rules made them: same ids, in routing order.
    ids = sorted(m.notification_id if isinstance(m, FeedbackNotification) else m.escalation_id for m in per_fact)
    routed_ids = sorted(
        m.notification_id if isinstance(m, FeedbackNotification) else m.escalation_id
        for m in routed
        if not isinstance(m, FeedbackDigest)
    )
    assert routed_ids == ids
    assert "clinician" in render_text(figures)


def test_spread_uses_nearest_rank_percentiles() -> None:
    assert Spread.of([1, 1, 2, 3, 10]) == Spread(buckets=5, p50=2, p90=10, max=10)
    assert Spread.of([]) == Spread(0, 0, 0, 0)
