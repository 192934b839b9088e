"""`docloop schemas export`: JSON Schema for every contract, the AsyncAPI document of the service and the
OpenAPI document of its read API.

Both are generated from the code (the pydantic models and the FastStream app) and committed; a test fails
when the committed files drift from what the code generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import schemas

SCHEMAS_DIR = Path(schemas.__file__).resolve().parent

INBOUND: dict[str, type[BaseModel]] = {
    "claim-denied": schemas.ClaimDenied,
    "note-signed": schemas.NoteSigned,
    "feedback-acknowledged": schemas.FeedbackAcknowledged,
    "feedback-silence": schemas.FeedbackSilence,
    "feedback-reviewed": schemas.FeedbackReviewed,
}
OUTBOUND: dict[str, type[BaseModel]] = {
    "feedback-notification": schemas.FeedbackNotification,
    "escalation-raised": schemas.EscalationRaised,
    "feedback-digest": schemas.FeedbackDigest,
}


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def generated_files() -> dict[str, str]:
    """Relative path inside schemas/ -> file content."""
    files = {}
    for name, model in INBOUND.items():
        files[f"json/{name}.v1.schema.json"] = _dump(model.model_json_schema(mode="validation"))
    for name, model in OUTBOUND.items():
        files[f"json/{name}.v1.schema.json"] = _dump(model.model_json_schema(mode="serialization"))
    from engine.serve import asyncapi_document  # imports FastStream: only when exporting

    files["asyncapi.json"] = _dump(asyncapi_document())
    from engine.api import openapi_document

    files["openapi.json"] = _dump(openapi_document())
    return files


def export(out: Path | None = None) -> list[Path]:
    base = out or SCHEMAS_DIR
    written = []
    for relative, content in generated_files().items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
