"""Hostile input at decode time (issue #10): every case of the corpus is turned away with a reason that names
the field, never the value; and no input at all, however strange, makes the decoder raise anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import InvalidEvent, decode_event
from tests.support.hostile import BASES, PROVIDER, SECRET, Hostile, corpus, deep_nesting, tried

CORPUS = corpus()


def reason_for(raw: bytes | str) -> str:
    try:
        decode_event(raw)
    except InvalidEvent as rejected:
        return rejected.reason
    raise AssertionError("accepted")


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_each_hostile_input_is_rejected_naming_where_never_what(case: Hostile) -> None:
    tried("decode")
    reason = reason_for(case.raw)
    assert case.where in reason, reason
    assert SECRET not in reason
    if case.value is not None:
        assert case.value not in reason
    assert len(reason) < 500


def test_the_corpus_covers_every_kind_the_issue_lists() -> None:
    names = " ".join(case.name for case in CORPUS)
    for kind in (
        "Arabic-Indic digits",
        "schema_version true",
        "schema_version 1.0",
        "negative amount",
        "exponent amount",
        "padded amount",
        "UTF-16",
        "UTF-32",
        "byte order mark",
        "NaN",
        "Infinity",
        "occurred_at as a unix time",
        "NUL",
        "line_number 2^31",
        "service_date in year 1",
        "occurred_at in 9999 with an offset",
        "nested 10,000 deep",
        "5,000-digit",
    ):
        assert kind in names, kind
    assert len({case.raw for case in CORPUS}) == len(CORPUS)


def test_each_base_event_is_valid_so_a_rejection_is_about_the_one_change() -> None:
    for name, build in BASES.items():
        assert decode_event(json.dumps(build(f"base-{name}"))).event_id == f"base-{name}"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("lines.0.billed_amount", "99999999.99"),
        ("lines.0.paid_amount", "0"),
        ("lines.0.adjustments.0.amount", "0.5"),
        ("lines.0.line_number", 2**31 - 1),
        ("service_date", "1900-01-01"),
        ("service_date", "2199-12-31"),
        ("occurred_at", "1900-01-01T00:00:00Z"),
        ("occurred_at", "2199-12-31T23:59:59.999999-00:00"),
        ("occurred_at", "2026-02-16T09:00:00.5+05:30"),
        ("payer.name", "Infinity NaN Health"),  # the words are fine in a string
        ("claim_id", "C\\u0000"),  # a backslash and "u0000", not a NUL
        ("x_extra", 1e300),
    ],
)
def test_values_at_the_edges_are_still_accepted(path: str, value: Any) -> None:
    event = BASES["claim"]("edge")
    target: Any = event
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    assert decode_event(json.dumps(event).encode()).event_id == "edge"


def test_str_input_is_judged_as_its_utf8_bytes() -> None:
    for case in CORPUS[:10]:
        text = case.raw.decode("utf-8")
        assert reason_for(text) == reason_for(case.raw)
    assert reason_for('{"event_type": "\ud800"}').startswith("not JSON")


def test_deep_nesting_is_rejected_as_not_json() -> None:
    assert reason_for(deep_nesting()).startswith("not JSON: recursion limit exceeded")


# -- properties: nothing but InvalidEvent, ever ------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def decodes_or_is_rejected(raw: bytes | str) -> None:
    try:
        decode_event(raw)
    except InvalidEvent as rejected:
        assert rejected.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"\xef\xbb\xbf" + json.dumps(BASES["claim"]("x")).encode())
@example(deep_nesting())
def test_arbitrary_bytes_only_ever_raise_invalid_event(raw: bytes) -> None:
    tried("decode")
    decodes_or_is_rejected(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_ever_raises_invalid_event(document: Any) -> None:
    tried("decode")
    decodes_or_is_rejected(json.dumps(document).encode())


def _leaf_paths(document: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(document, dict):
        return [prefix] + [p for key, item in document.items() for p in _leaf_paths(item, (*prefix, key))]
    if isinstance(document, list):
        return [prefix] + [p for index, item in enumerate(document) for p in _leaf_paths(item, (*prefix, index))]
    return [prefix]


# A hostile value carries a marker the reason must never show.
MARKER = "QZXJ"
hostile_values = st.one_of(
    st.text(min_size=1, max_size=12).map(lambda t: MARKER + t),
    st.sampled_from(
        ["\u0000", "\ud800", "\u0661\u0662\u0663", " 1.00 ", "-1", "1e5", "NaN", "9999-12-31T23:59:59-01:00"]
    ).map(lambda t: MARKER + t),
    st.integers(min_value=10**9, max_value=10**40).map(lambda n: int(f"7777{n}")),
    st.sampled_from([True, False, None, [], {}, 1.5, float("nan"), float("inf"), -float("inf")]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BASES)), st.data(), hostile_values)
def test_mutated_valid_events_are_accepted_or_rejected_without_echoing_the_value(
    kind: str, data: st.DataObject, value: Any
) -> None:
    tried("decode")
    event = BASES[kind](f"mutant-{kind}")
    path = data.draw(st.sampled_from(_leaf_paths(event)[1:]))
    target: Any = event
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    raw = json.dumps(event).encode()
    try:
        decode_event(raw)
    except InvalidEvent as rejected:
        leaked = [MARKER, SECRET] + ([str(value)] if isinstance(value, int) and not isinstance(value, bool) else [])
        assert not any(text in rejected.reason for text in leaked), rejected.reason


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(BASES)), st.data())
def test_byte_level_damage_to_a_valid_event_only_ever_raises_invalid_event(kind: str, data: st.DataObject) -> None:
    tried("decode")
    raw = bytearray(json.dumps(BASES[kind]("damaged"), ensure_ascii=False).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[at:at] = data.draw(st.sampled_from([b"\x00", b"\\u0000", b"NaN", b"[" * 300, b"9" * 4400, b"\xff"]))
        else:
            del raw[at]
    decodes_or_is_rejected(bytes(raw))


def test_a_valid_npi_in_ascii_still_decodes() -> None:
    assert PROVIDER.isascii()
    assert decode_event(json.dumps(BASES["claim"]("ascii")).encode()).event_id == "ascii"
