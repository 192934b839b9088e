"""Properties that must hold for any event stream (hypothesis)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.rules import Engine
from engine.domain.state import State
from schemas import FeedbackNotification, decode_event
from tests.support.events import ack, claim, note, npi

PROVIDERS = [npi("123456789"), npi("198765432"), npi("176543210")]
CODES = ["99213", "99214", "99215", "27447"]
ADJUSTMENTS = [
    ("CO", "150", ["M25"]),
    ("CO", "16", ["M127"]),
    ("CO", "50", ["N661"]),
    ("CO", "27", ["N30"]),
    ("CO", "97", ["M15"]),
    ("PR", "2", []),
    ("CO", "45", []),
    ("CO", "999", []),
]
PHI = "MRN-PHI-"


@st.composite
def event(draw: st.DrawFn, index: int) -> dict[str, Any]:
    day = draw(st.integers(1, 200))
    moment = f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{draw(st.integers(0, 23)):02d}:00:00Z"
    visit_day = max(1, day - draw(st.integers(14, 45)))
    visit = f"2026-{1 + visit_day // 28:02d}-{1 + visit_day % 28:02d}"
    provider = draw(st.sampled_from(PROVIDERS))
    code = draw(st.sampled_from(CODES))
    patient = f"{PHI}{draw(st.integers(0, 99))}"
    kind = draw(st.sampled_from(["claim", "claim", "claim", "note", "ack"]))
    if kind == "claim":
        group, carc, remarks = draw(st.sampled_from(ADJUSTMENTS))
        amount = f"{draw(st.integers(1, 500000)) / 100:.2f}"
        return claim(
            f"e{index}",
            occurred_at=moment,
            service_date=visit,
            provider=provider,
            procedure_code=code,
            adjustments=[(group, carc, amount)],
            remarks=remarks,
            amount=amount,
            patient_ref=patient,
            claim_id=f"C{draw(st.integers(0, 30))}",
            department=draw(st.sampled_from(["IM", "FM"])),
        )
    if kind == "note":
        return note(
            f"e{index}",
            signed_at=moment,
            service_date=visit,
            provider=provider,
            procedure_codes=[code],
            mdm_level=draw(st.sampled_from([None, "low", "moderate", "high"])),
            patient_ref=patient,
            note_id=f"N{draw(st.integers(0, 30))}",
        )
    return ack(
        f"e{index}",
        occurred_at=moment,
        provider=provider,
        procedure_code=code,
        root_cause=draw(st.sampled_from(["em_level_unsupported", "records_missing"])),
    )


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    size = draw(st.integers(1, 60))
    return [draw(event(i)) for i in range(size)]


def run(events: list[dict[str, Any]]) -> list[str]:
    engine, state = Engine(), State()
    out: list[str] = []
    for item in events:
        out += [m.model_dump_json() for m in engine.process(decode_event(json.dumps(item)), state).messages]
    return out


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(streams())
def test_the_same_input_gives_byte_identical_output(events: list[dict[str, Any]]) -> None:
    assert run(events) == run(events)


@FAST
@given(streams(), st.data())
def test_delivering_any_event_twice_changes_nothing(events: list[dict[str, Any]], data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(events) - 1))
    again = data.draw(st.integers(position, len(events)))
    with_repeat = events[:again] + [events[position]] + events[again:]
    assert run(with_repeat) == run(events)


MONEY = re.compile(r"\$|\b\d+\.\d{2}\b|\bUSD\b|dollar", re.IGNORECASE)


@FAST
@given(streams())
def test_no_clinician_message_contains_a_currency_amount(events: list[dict[str, Any]]) -> None:
    for line in run(events):
        message = json.loads(line)
        if message.get("audience") == "clinician":
            assert not MONEY.search(" ".join([message["title"], message["body"], message["guidance"]]))
            assert message["pattern"]["amount_at_risk"] is None


@FAST
@given(streams())
def test_no_output_contains_a_patient_ref(events: list[dict[str, Any]]) -> None:
    for line in run(events):
        assert PHI not in line


def test_notifications_are_json_with_money_as_strings() -> None:
    events = [
        claim(
            f"m{i}",
            occurred_at=f"2026-02-0{i + 1}T00:00:00Z",
            service_date=f"2026-01-0{i + 1}",
            provider=PROVIDERS[0],
            adjustments=[("CO", "150", "185.00")],
            amount="185.00",
        )
        for i in range(3)
    ]
    billing = [json.loads(m) for m in run(events) if '"billing"' in m][0]
    assert billing["pattern"]["amount_at_risk"] == "555.00"
    assert FeedbackNotification.model_validate(billing).kind == "pattern_opened"
