"""Inbound contracts: what is accepted, and what is rejected with a reason that never echoes a value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.export import SCHEMAS_DIR, generated_files
from schemas import InvalidEvent, decode_event, npi_is_valid
from schemas.common import _check_digit_holds
from tests.support.events import ack, claim, note, npi

GOOD_NPI = npi("123456789")
SECRET = "MRN-SECRET-4242"


@pytest.mark.parametrize("value", ["1234567893", "1245319599", "1679576722"])
def test_valid_npis_pass_the_check_digit(value: str) -> None:
    assert npi_is_valid(value)


@pytest.mark.parametrize("value", ["1234567890", "123456789", "12345678931", "abcdefghij", ""])
def test_invalid_npis_fail(value: str) -> None:
    assert not npi_is_valid(value)


def test_the_check_digit_cache_keeps_only_ten_ascii_digits() -> None:
    """Its entries are bounded in size as in number: a hostile megabyte-long "NPI" is refused before it."""
    before = _check_digit_holds.cache_info().currsize
    assert not npi_is_valid("1" * 1_000_000) and not npi_is_valid("١٢٣٤٥٦٧٨٩٣")
    assert _check_digit_holds.cache_info().currsize == before
    assert npi_is_valid("1234567893") and not npi_is_valid("1234567894")  # cached or not, the same answer
    assert npi_is_valid("1234567893") and not npi_is_valid("1234567894")


def test_the_design_examples_decode() -> None:
    decoded = [
        decode_event(
            json.dumps(claim("d-1", occurred_at="2026-02-16T09:00:00Z", service_date="2026-01-19", provider=GOOD_NPI))
        ),
        decode_event(
            json.dumps(note("n-1", signed_at="2026-01-19T18:00:00Z", service_date="2026-01-19", provider=GOOD_NPI))
        ),
        decode_event(json.dumps(ack("a-1", occurred_at="2026-02-18T10:00:00Z", provider=GOOD_NPI))),
    ]
    assert [e.event_type for e in decoded] == ["claim.denied", "note.signed", "feedback.acknowledged"]


def test_unknown_fields_are_tolerated() -> None:
    event = claim("d-1", occurred_at="2026-02-16T09:00:00Z", service_date="2026-01-19", provider=GOOD_NPI)
    event["extra_from_the_future"] = {"anything": 1}
    assert decode_event(json.dumps(event)).event_id == "d-1"


def mutate(path: str, value: Any) -> dict[str, Any]:
    event = claim(
        "d-1", occurred_at="2026-02-16T09:00:00Z", service_date="2026-01-19", provider=GOOD_NPI, patient_ref=SECRET
    )
    target: Any = event
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return event


@pytest.mark.parametrize(
    ("raw", "reason_starts"),
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"event_type": "claim.paid", "patient_ref": SECRET}).encode(), "unknown event_type"),
        (json.dumps({**mutate("event_id", "x"), "schema_version": 2}).encode(), "unsupported schema_version"),
        (json.dumps(mutate("rendering_provider.npi", "1234567890")).encode(), "invalid event: rendering_provider.npi"),
        (json.dumps(mutate("lines.0.billed_amount", 210.0)).encode(), "invalid event: lines.0.billed_amount"),
        (json.dumps(mutate("service_date", SECRET)).encode(), "invalid event: service_date"),
        (json.dumps(mutate("occurred_at", "2026-02-16T09:00:00")).encode(), "invalid event: occurred_at"),
        (json.dumps(mutate("claim_id", KeyError)).encode(), "invalid event: claim_id"),
        (json.dumps(mutate("lines", [])).encode(), "invalid event: lines"),
    ],
)
def test_bad_input_is_rejected_with_a_reason_free_of_values(raw: bytes, reason_starts: str) -> None:
    with pytest.raises(InvalidEvent) as rejected:
        decode_event(raw)
    reason = rejected.value.reason
    assert reason.startswith(reason_starts), reason
    assert SECRET not in reason and "1234567890" not in reason and "210.0" not in reason


def test_an_acknowledgement_must_name_a_notification_or_a_pattern() -> None:
    event = ack("a-1", occurred_at="2026-02-18T10:00:00Z")
    with pytest.raises(InvalidEvent, match="either notification_id or pattern_key is required"):
        decode_event(json.dumps(event))


def test_committed_json_schemas_match_the_models() -> None:
    for relative, content in generated_files().items():
        path = SCHEMAS_DIR / relative
        assert path.exists(), f"{relative} is missing: run `docloop schemas export`"
        assert path.read_text(encoding="utf-8") == content, f"{relative} drifted: run `docloop schemas export`"
