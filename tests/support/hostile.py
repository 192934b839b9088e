"""The hostile-input corpus (issue #10): values a producer may send that the engine must turn away, one by one,
with a reason that names where the problem is and never repeats the value.

Each case is built from a valid event with one thing changed, so a rejection can only be about that thing.
The decode suite (tests/unit), the engine on both stores (tests/integration), `docloop serve` on the real
Kafka (tests/e2e) and the `poison` phase of `make bench` all use this one list.
"""

from __future__ import annotations

import codecs
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.events import ack, claim, note, npi

PROVIDER = npi("123456789")
EDGE_PROVIDER = npi("176543210")
SECRET = "MRN-HOSTILE-SECRET-77"  # every case carries it as patient_ref: no reason may ever show it
RAW = "__RAW__"  # stands for JSON text that json.dumps cannot write (NaN spelled out, 5,000-digit integers...)

# How many hostile inputs each suite tried; tests/conftest.py prints the total at the end of the run.
TRIED: Counter[str] = Counter()


def tried(suite: str, count: int = 1) -> None:
    TRIED[suite] += count


@dataclass(frozen=True)
class Hostile:
    name: str
    raw: bytes
    where: str  # what the reason must name: a field path, or "not JSON" when there is no field to name
    value: str | None = None  # the hostile value as text: never part of the reason


def _digits(npi_value: str, zero: str) -> str:
    """The same NPI in another script's digits (str.isdigit and a Unicode-aware \\d accept them)."""
    return "".join(chr(ord(zero) + int(c)) for c in npi_value)


def _set(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = event
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return event


def _dump(event: dict[str, Any], raw_text: str | None = None, *, ascii_only: bool = True) -> bytes:
    text = json.dumps(event, ensure_ascii=ascii_only)
    if raw_text is not None:
        text = text.replace(json.dumps(RAW), raw_text)
    return text.encode("utf-8")


def base_claim(event_id: str) -> dict[str, Any]:
    return claim(
        event_id,
        occurred_at="2026-02-16T09:00:00Z",
        service_date="2026-01-19",
        provider=PROVIDER,
        patient_ref=SECRET,
        claim_id=f"CLM-{event_id}",
    )


def base_note(event_id: str) -> dict[str, Any]:
    return note(
        event_id, signed_at="2026-01-19T18:00:00Z", service_date="2026-01-19", provider=PROVIDER, patient_ref=SECRET
    )


def base_ack(event_id: str) -> dict[str, Any]:
    return ack(event_id, occurred_at="2026-02-18T10:00:00Z", provider=PROVIDER)


BASES: dict[str, Callable[[str], dict[str, Any]]] = {"claim": base_claim, "note": base_note, "ack": base_ack}

# (name, base, field path, value; a str starting with RAW's marker is JSON text, where the reason must point).
# `where` defaults to the path.
_FIELD_CASES: list[tuple[str, str, str, Any, str | None]] = [
    # NPIs in non-ASCII digits
    ("npi in Arabic-Indic digits", "claim", "rendering_provider.npi", _digits(PROVIDER, "\u0660"), None),
    ("npi in fullwidth digits", "claim", "rendering_provider.npi", _digits(PROVIDER, "\uff10"), None),
    ("author npi in Devanagari digits", "note", "author.npi", _digits(PROVIDER, "\u0966"), None),
    ("pattern_key npi in Bengali digits", "ack", "pattern_key.provider_npi", _digits(PROVIDER, "\u09e6"), None),
    ("npi with a trailing newline", "claim", "rendering_provider.npi", PROVIDER + "\n", None),
    # schema_version must be the JSON integer 1
    ("schema_version true", "claim", "schema_version", True, None),
    ("schema_version 1.0", "claim", "schema_version", 1.0, None),
    ("schema_version 1e0", "note", "schema_version", RAW + "1e0", None),
    ("schema_version as a string", "ack", "schema_version", "1", None),
    ("schema_version null", "claim", "schema_version", None, None),
    # money: a plain decimal string of at most 8 integer digits and 2 decimals
    ("negative amount", "claim", "lines.0.billed_amount", "-99999.99", None),
    ("exponent amount", "claim", "lines.0.billed_amount", "1e5", None),
    ("padded amount", "claim", "lines.0.paid_amount", " 185.00 ", None),
    ("amount with a plus sign", "claim", "lines.0.adjustments.0.amount", "+185.00", None),
    ("amount with three decimals", "claim", "lines.0.adjustments.0.amount", "185.001", None),
    ("amount over 8 integer digits", "claim", "lines.0.billed_amount", "100000000.00", None),
    ("amount of 14 digits", "claim", "lines.0.adjustments.0.amount", "999999999999.99", None),
    ("amount as a JSON number", "claim", "lines.0.billed_amount", 185.0, None),
    ("amount as a JSON integer", "claim", "lines.0.paid_amount", 185, None),
    ("amount NaN as a string", "claim", "lines.0.billed_amount", "NaN", None),
    ("amount Infinity as a string", "claim", "lines.0.billed_amount", "Infinity", None),
    ("amount in Arabic-Indic digits", "claim", "lines.0.billed_amount", "\u0661\u0668\u0665.\u0660\u0660", None),
    ("amount with a digit separator", "claim", "lines.0.billed_amount", "1_000.00", None),
    ("amount in hexadecimal", "claim", "lines.0.billed_amount", "0x1F", None),
    ("empty amount", "claim", "lines.0.paid_amount", "", None),
    # NaN / Infinity anywhere, known field or not
    ("NaN in an unknown field", "claim", "x_extra", RAW + "NaN", "x_extra"),
    ("Infinity in a nested unknown field", "claim", "payer.rating", RAW + "Infinity", "payer.rating"),
    ("-Infinity in a list", "note", "documentation.elements.0", RAW + "-Infinity", "documentation.elements.0"),
    ("NaN as line_number", "claim", "lines.0.line_number", RAW + "NaN", None),
    ("Infinity as total_time_minutes", "note", "documentation.total_time_minutes", RAW + "Infinity", None),
    # times are RFC 3339 strings, never numbers
    ("occurred_at as a unix time", "claim", "occurred_at", 1771232400, None),
    ("occurred_at as a fractional unix time", "ack", "occurred_at", 1771232400.5, None),
    ("occurred_at as a string of digits", "claim", "occurred_at", "1771232400", None),
    ("signed_at as a unix time", "note", "signed_at", 1768845600, None),
    ("service_date as a number", "claim", "service_date", 20472, None),
    ("occurred_at without seconds", "claim", "occurred_at", "2026-02-16T09:00Z", None),
    ("occurred_at with a space", "claim", "occurred_at", "2026-02-16 09:00:00Z", None),
    # NUL characters in any string
    ("NUL in claim_id", "claim", "claim_id", "CLM\u0000-1", None),
    ("NUL in patient_ref", "claim", "patient_ref", SECRET + "\u0000", None),
    ("NUL in payer name", "claim", "payer.name", "Acme\u0000Health", None),
    ("NUL in an unknown field", "note", "x_extra", "\u0000", "x_extra"),
    ("NUL in a list item", "note", "documentation.elements.1", "exam\u0000", None),
    ("NUL in a comment", "ack", "comment", "ok\u0000", None),
    # lone surrogates are not Unicode text (neither store keeps them); the JSON parser refuses them
    ("lone surrogate in claim_id", "claim", "claim_id", "CLM-\ud800", "not JSON"),
    ("lone surrogate in an unknown field", "claim", "x_extra", "\udfff", "not JSON"),
    # integers stay inside 32 bits
    ("line_number 2^31", "claim", "lines.0.line_number", 2**31, None),
    ("line_number 2^63", "claim", "lines.0.line_number", 2**63, None),
    ("line_number 2^64", "claim", "lines.0.line_number", 2**64, None),
    ("line_number negative", "claim", "lines.0.line_number", -(2**31) - 1, None),
    ("line_number true", "claim", "lines.0.line_number", True, None),
    ("line_number 1.0", "claim", "lines.0.line_number", 1.0, None),
    ("total_time_minutes 2^31", "note", "documentation.total_time_minutes", 2**31, None),
    # dates and times outside 1900-01-01 .. 2199-12-31 (both stores and every later sum hold these)
    ("service_date in year 1", "claim", "service_date", "0001-01-01", None),
    ("service_date in 1899", "claim", "service_date", "1899-12-31", None),
    ("service_date in 2200", "note", "service_date", "2200-01-01", None),
    ("service_date in 9999", "claim", "service_date", "9999-12-31", None),
    ("occurred_at in year 1 with an offset", "claim", "occurred_at", "0001-01-01T00:00:00+01:00", None),
    ("occurred_at in 9999 with an offset", "claim", "occurred_at", "9999-12-31T23:59:59-01:00", None),
    ("occurred_at at the end of 9999", "ack", "occurred_at", "9999-12-31T23:59:59Z", None),
    ("occurred_at in 1899", "claim", "occurred_at", "1899-12-31T23:59:59Z", None),
    ("signed_at in 9999 with an offset", "note", "signed_at", "9999-12-31T23:59:59-14:00", None),
    ("signed_at in year 1", "note", "signed_at", "0001-01-01T00:00:00Z", None),
    ("occurred_at on 30 February", "claim", "occurred_at", "2026-02-30T09:00:00Z", None),
    # integers of more than 4,300 digits (Python's int() limit) and deep nesting: no field to name
    ("5,000-digit line_number", "claim", "lines.0.line_number", RAW + "9" * 5000, "not JSON"),
    ("5,000-digit integer in an unknown field", "note", "x_extra", RAW + "-" + "7" * 5000, "not JSON"),
    ("event nested 10,000 deep in a field", "claim", "x_extra", RAW + "[" * 10000 + "]" * 10000, "not JSON"),
    ("event nested 1,000 deep in a field", "claim", "x_extra", RAW + "[" * 1000 + "]" * 1000, "not JSON"),
    ("objects nested 10,000 deep in a field", "ack", "x_extra", RAW + '{"a":' * 10000 + "1" + "}" * 10000, "not JSON"),
]


def _value_text(value: Any) -> str | None:
    """The value as it could leak into a reason, when it is distinctive enough to look for."""
    if isinstance(value, str):
        text = value.removeprefix(RAW)
        nesting_only = not set(text) - set('[]{}"a:1')  # brackets could match anything; skip them
        return None if len(text) < 4 or nesting_only else text
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**6:
        return str(value)
    return None


def _field_case(index: int, name: str, base: str, path: str, value: Any, where: str | None) -> Hostile:
    event = BASES[base](f"hostile-{index}")
    if isinstance(value, str) and value.startswith(RAW):
        raw = _dump(_set(event, path, RAW), value.removeprefix(RAW))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raw = _dump(_set(event, path, RAW), str(value))  # exact, whatever json.dumps would do
    else:
        raw = _dump(_set(event, path, value))
    return Hostile(name, raw, where or path, _value_text(value))


def _whole_value_cases(start: int) -> list[Hostile]:
    """Cases about the bytes as a whole: encodings, byte order marks, not an object."""
    text = json.dumps(base_claim(f"hostile-{start}"))
    utf8 = text.encode("utf-8")
    named = {**base_claim(f"hostile-{start + 1}"), "payer": {"id": "60054", "name": "Cl\u00ednica S\u00e3o Jo\u00e3o"}}
    cases = [
        Hostile("UTF-16 with a byte order mark", text.encode("utf-16"), "not JSON"),
        Hostile("UTF-16LE without a byte order mark", text.encode("utf-16-le"), "not JSON"),
        Hostile("UTF-16BE without a byte order mark", text.encode("utf-16-be"), "not JSON"),
        Hostile("UTF-32 with a byte order mark", text.encode("utf-32"), "not JSON"),
        Hostile("UTF-32LE without a byte order mark", text.encode("utf-32-le"), "not JSON"),
        Hostile("UTF-8 with a byte order mark", codecs.BOM_UTF8 + utf8, "not JSON"),
        Hostile("Latin-1 text", json.dumps(named, ensure_ascii=False).encode("latin-1"), "not JSON"),
        Hostile("empty value", b"", "not JSON"),
        Hostile("whitespace only", b" \n\t ", "not JSON"),
        Hostile("truncated event", utf8[: len(utf8) // 2], "not JSON"),
        Hostile("a raw NUL byte inside a string", utf8.replace(b"CLM-", b"CLM\x00-", 1), "not JSON"),
        Hostile("JSON null", b"null", "not a JSON object"),
        Hostile("a JSON array of an event", b"[" + utf8 + b"]", "not a JSON object"),
        Hostile("array nested 10,000 deep", b"[" * 10000 + b"]" * 10000, "not JSON"),
        Hostile("object nested 10,000 deep", b'{"a":' * 10000 + b"1" + b"}" * 10000, "not JSON"),
        Hostile("a 5,000-digit integer alone", b"9" * 5000, "not JSON"),
        Hostile("NaN alone", b"NaN", "(event): not a finite number"),
        Hostile("event_type a list", _dump({**base_claim("x"), "event_type": ["claim.denied"]}), "event_type"),
    ]
    return cases


def corpus() -> list[Hostile]:
    """Every hostile case, each a distinct event id (hostile-N) so they can share a batch or a topic."""
    cases = [_field_case(index, *case) for index, case in enumerate(_FIELD_CASES)]
    return cases + _whole_value_cases(len(cases))


def valid_events() -> list[bytes]:
    """Three denials that open a pattern, plus events at the edges of what the contract accepts."""
    opening = [
        claim(f"ok-{n}", occurred_at=f"2026-02-0{n}T09:00:00Z", service_date=f"2026-01-0{n + 4}", provider=PROVIDER)
        for n in (1, 2, 3)
    ]
    largest = claim(
        "ok-edge-claim",
        occurred_at="2026-02-04T09:00:00Z",
        service_date="1900-01-01",
        provider=EDGE_PROVIDER,
        amount="99999999.99",
        line_number=2**31 - 1,
        claim_id="C" * 128,
    )
    late_signature = note(
        "ok-edge-note",
        signed_at="2199-12-31T23:59:59Z",
        occurred_at="2026-02-04T10:00:00Z",
        service_date="2199-12-31",
        provider=EDGE_PROVIDER,
    )
    return [json.dumps(event).encode() for event in (*opening, largest, late_signature)]


def deep_nesting() -> bytes:
    """The case that made a batch of 26,000 events take 62 s instead of 3 s (issue #10)."""
    return b"[" * 10000 + b"]" * 10000
