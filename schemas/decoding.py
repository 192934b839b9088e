"""Turn raw bytes into a validated inbound event, or a reason that is safe to log.

Reasons name the field and the kind of problem, never the value: values may be patient identifiers.
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from schemas.inbound import EVENT_MODELS, ClaimDenied, FeedbackAcknowledged, FeedbackReviewed, InboundEvent, NoteSigned

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


def decode_event(raw: bytes | str) -> InboundEvent:
    try:
        return _ANY_EVENT.validate_json(raw)
    except ValidationError:
        pass
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidEvent("not JSON: the value must be one UTF-8 JSON object") from None
    if not isinstance(document, dict):
        raise InvalidEvent("not a JSON object")
    event_type = document.get("event_type")
    model = EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise InvalidEvent("unknown event_type: expected one of " + ", ".join(sorted(EVENT_MODELS)))
    version = document.get("schema_version")
    if version != 1 or isinstance(version, bool):
        raise InvalidEvent("unsupported schema_version: this engine reads schema_version 1")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InvalidEvent(describe_validation_error(error)) from None
