"""Turn raw bytes into a validated inbound event, or a reason that is safe to log.

Reasons name the field and the kind of problem, never the value: values may be patient identifiers.

The verdict depends on the bytes alone, never on what happens to the event later, so an event the decoder
accepts is one both stores hold and every message built from it can carry: strict UTF-8 JSON without a byte
order mark, no NaN or Infinity, no NUL character in any string, and the field bounds of `schemas.common`.
"""

from __future__ import annotations

import codecs
import json
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from schemas.inbound import (
    EVENT_MODELS,
    ClaimDenied,
    FeedbackAcknowledged,
    FeedbackReviewed,
    FeedbackSilence,
    InboundEvent,
    NoteSigned,
)

# One pass over the bytes for the common case (a valid event); the slower path below only runs for
# invalid input, to say precisely what is wrong with it.
_ANY_EVENT: TypeAdapter[InboundEvent] = TypeAdapter(
    Annotated[ClaimDenied | NoteSigned | FeedbackAcknowledged | FeedbackReviewed, Field(discriminator="event_type")]
)


class InvalidEvent(ValueError):
    """The bytes are not an event Docloop accepts; `reason` is free of field values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(event)"


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:limit]:
        problem = item["type"]
        if problem == "value_error":
            # Our own validators write these messages, and they never include the value.
            problem = str(item.get("ctx", {}).get("error", item["msg"]))
        parts.append(f"{_field_path(item['loc'])}: {problem}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid event: " + "; ".join(parts)


class _NonFinite:
    """Stands in for NaN / Infinity while parsing, so the check can name the field that held it."""


_NON_FINITE = _NonFinite()


def _not_json(problem: str) -> InvalidEvent:
    return InvalidEvent(f"not JSON: {problem}")


def _parse_strictly(raw: bytes, parser_problem: str | None = None) -> object:
    """The JSON document in `raw`, or InvalidEvent saying which rule of strict UTF-8 JSON it breaks.

    `parser_problem` is what the one-pass parser said about the bytes, if it refused them: that verdict stands
    (so how deep the caller's stack is never changes it), only explained better for the encoding mistakes.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raise _not_json("the value starts with a byte order mark (send UTF-8 without one)")
    try:
        # Strict UTF-8: json.loads would guess UTF-16 and UTF-32 from the first bytes and read them.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_json("the value must be one UTF-8 JSON object") from None
    if parser_problem is not None:
        if "\x00" in text:  # never in JSON text, always in UTF-16 or UTF-32 of ASCII
            raise _not_json("NUL bytes: the value must be UTF-8, not UTF-16 or UTF-32")
        raise _not_json(parser_problem)
    try:
        document = json.loads(text, parse_constant=lambda _: _NON_FINITE)
    except RecursionError:
        raise _not_json("nested too deeply") from None
    except json.JSONDecodeError:
        raise _not_json("the value must be one UTF-8 JSON object") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's int conversion limit)
        raise _not_json("a number has too many digits") from None
    _check_values(document)
    return document


def _check_values(document: object) -> None:
    """NaN, Infinity, NUL characters and lone surrogates anywhere (keys included), named by their field."""
    pending: list[tuple[tuple[int | str, ...], object]] = [((), document)]
    while pending:
        location, value = pending.pop()
        if value is _NON_FINITE:
            raise InvalidEvent(
                f"invalid event: {_field_path(location)}: not a finite number (JSON has no NaN or infinities)"
            )
        if isinstance(value, str):
            _check_text(location, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text((*location, "(key)"), key)
                pending.append(((*location, key), item))
        elif isinstance(value, list):
            pending.extend(((*location, index), item) for index, item in enumerate(value))


def _check_text(location: tuple[int | str, ...], text: str) -> None:
    if "\x00" in text:
        raise InvalidEvent(f"invalid event: {_field_path(location)}: NUL character in a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": not a Unicode character
        raise InvalidEvent(f"invalid event: {_field_path(location)}: not a Unicode string") from None


def _parser_problem(error: ValidationError) -> str | None:
    """The JSON parser's complaint (a fixed text such as "recursion limit exceeded"), without its position."""
    for item in error.errors(include_input=False, include_url=False):
        if item["type"] == "json_invalid":
            return str(item.get("ctx", {}).get("error", "invalid JSON")).split(" at line ")[0]
    return None


def _explain(raw: bytes, error: ValidationError) -> InvalidEvent:
    """Why `raw` is not a valid event (the one-pass validation said it is not)."""
    document = _parse_strictly(raw, _parser_problem(error))
    if not isinstance(document, dict):
        return InvalidEvent("not a JSON object")
    event_type = document.get("event_type")
    model = EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        return InvalidEvent("unknown event_type: expected one of " + ", ".join(sorted(EVENT_MODELS)))
    if type(document.get("schema_version")) is not int or document["schema_version"] != 1:
        return InvalidEvent("unsupported schema_version: this engine reads schema_version 1 (a JSON integer)")
    try:
        model.model_validate_json(raw)
    except ValidationError as error:
        return InvalidEvent(describe_validation_error(error))
    # Only reached if the union and the event's own model disagreed, which they should not.
    return InvalidEvent("invalid event: (event): does not match its event_type's schema")


def decode_event(raw: bytes | str) -> InboundEvent:
    """The event in `raw`, or InvalidEvent: nothing else escapes, whatever the bytes are."""
    try:
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    except UnicodeEncodeError:
        raise _not_json("the value must be one UTF-8 JSON object") from None
    try:
        try:
            event = _ANY_EVENT.validate_json(data)
        except ValidationError as error:
            raise _explain(data, error) from None
        # The one-pass parser (pydantic's) reads NaN and Infinity and lets NUL characters through, in fields
        # the models ignore as much as in the ones they read. These bytes cannot be missing from a value that
        # holds either and are absent from nearly every valid event (about 1.5 us for the three scans), so
        # only the few that contain them (a payer named "Infinity Health", say) pay for a careful look.
        if b"NaN" in data or b"Infinity" in data or b"\\u0000" in data:
            _parse_strictly(data)
        return event
    except InvalidEvent:
        raise
    except Exception as error:  # a decoder fault must cost one event, never the batch it came in
        raise InvalidEvent(f"not decodable: {type(error).__name__} while reading the value") from None


def decode_silence(raw: bytes | str) -> FeedbackSilence:
    """A FeedbackSilence from its topic, or InvalidEvent with a reason free of values."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEvent("not JSON: the value must be one UTF-8 JSON object") from None
    if not isinstance(document, dict):
        raise InvalidEvent("not a JSON object")
    if document.get("event_type") != "feedback.silence":
        raise InvalidEvent("unknown event_type: expected feedback.silence")
    version = document.get("schema_version")
    if version != 1 or isinstance(version, bool):
        raise InvalidEvent("unsupported schema_version: this engine reads schema_version 1")
    try:
        return FeedbackSilence.model_validate(document)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
