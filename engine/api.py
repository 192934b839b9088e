"""The read-only JSON API on serve's side port, for the systems that use Docloop (worklists, BI, ticketing).

Off unless API tokens are configured (DOCLOOP_API_TOKENS or DOCLOOP_API_TOKENS_FILE); then every route here
needs `Authorization: Bearer <token>`. The probes and /metrics stay open (engine/http.py).

The response models below are the contract: the handlers build them, and `openapi_document()` generates the
OpenAPI description from them and from the query models, so the document cannot drift from the code.
No response carries a patient identifier (patient_ref, patient_hash).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engine.domain.routing_config import RoutingConfig
from engine.settings import Settings
from engine.store import queries
from schemas import EscalationRaised, FeedbackNotification, RootCause
from schemas.outbound import EscalationFacts, EscalationReason, EscalationRole

API_VERSION = "1"
PatternStatusName = Literal["pending", "open", "resolved", "dormant", "withdrawn"]  # engine.domain.model.PatternStatus
MAX_PAGE = 500
DEFAULT_PAGE = 100


class ApiTokenError(Exception):
    """The token file cannot be read (the message names the file, never a token)."""


def load_api_tokens(settings: Settings) -> list[bytes]:
    """The accepted tokens: DOCLOOP_API_TOKENS_FILE (one per line) wins over DOCLOOP_API_TOKENS (comma separated)."""
    if settings.api_tokens_file is not None:
        try:
            text = settings.api_tokens_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ApiTokenError(
                f"cannot read DOCLOOP_API_TOKENS_FILE {settings.api_tokens_file}: {error.strerror}"
            ) from None
        values = [line.strip() for line in text.replace(",", "\n").splitlines()]
    elif settings.api_tokens is not None:
        values = [value.strip() for value in settings.api_tokens.get_secret_value().split(",")]
    else:
        return []
    return [value.encode() for value in values if value]


# ---- response and query models -----------------------------------------------------------------------------


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pattern(ApiModel):
    """One episode of a recurring gap: one provider, one root cause, one procedure code."""

    pattern_id: str
    provider_npi: str
    provider_name: str | None = Field(description="the latest name the denials gave for the NPI, if any")
    department: str
    root_cause: RootCause
    procedure_code: str
    episode: int
    status: PatternStatusName
    case_count: int
    post_feedback_cases: int
    amount_at_risk: str = Field(description="US dollars, two decimals, as a string (exact)")
    reason_codes: list[str]
    last_service_date: date | None
    opened_at: datetime | None = Field(description="when feedback was given (the pattern opened)")
    acknowledged_at: datetime | None
    ack_response: str | None
    resolved_at: datetime | None


class Case(ApiModel):
    """A denied claim line counted in a pattern (no patient identifier)."""

    case_id: str
    claim_id: str
    line_number: int
    encounter_id: str
    service_date: date
    procedure_code: str
    modifiers: list[str]
    amount: str = Field(description="US dollars, two decimals, as a string")
    reason_codes: list[str]
    payer_id: str
    post_feedback: bool
    denial_count: int
    first_denied_at: datetime
    last_denied_at: datetime
    note_id: str | None


class Notification(ApiModel):
    notification_id: str
    created_at: datetime | None
    published_at: datetime | None = Field(description="when Kafka confirmed it; null while queued")
    message: FeedbackNotification | None = Field(
        description="the published message; null once the outbox row was pruned"
    )


class Escalation(ApiModel):
    escalation_id: str
    level: Literal[1, 2]
    role: EscalationRole = Field(description="who it goes to: the level-1 or level-2 role of the owner team")
    team: str = Field(description="the team that owns the root cause (routing.json)")
    reason: EscalationReason
    department: str
    root_cause: RootCause
    pattern_id: str | None = Field(description="null for a systemic escalation (a department and root cause)")
    provider_npi: str | None = Field(description="the pattern's provider; null for a systemic escalation")
    state: Literal["open", "closed"] = Field(
        description="open while its pattern is open; a systemic one while its department still has open "
        "patterns of its root cause"
    )
    created_at: datetime
    published_at: datetime | None
    summary: str
    facts: EscalationFacts | None = Field(description="from the published message; null once it was pruned")


class PatternPage(ApiModel):
    items: list[Pattern]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class PatternWithHistory(ApiModel):
    pattern: Pattern
    cases: list[Case]
    notifications: list[Notification]
    escalations: list[Escalation] = Field(
        description="the pattern's own escalations and the systemic ones of its department and root cause"
    )


class EscalationPage(ApiModel):
    items: list[Escalation]
    next_cursor: str | None


class Problem(ApiModel):
    """An error: `error` says what, `fields` names the query parameters at fault (never their values)."""

    error: str
    fields: list[str] = []


class Page(ApiModel):
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description=f"items per page, at most {MAX_PAGE}")
    cursor: str | None = Field(None, description="`next_cursor` of the previous page")


class PatternQuery(Page):
    provider: str | None = Field(None, description="rendering provider NPI")
    department: str | None = None
    root_cause: RootCause | None = None
    status: PatternStatusName | None = None


class EscalationQuery(Page):
    role: EscalationRole | None = Field(
        None, description="owner role (routing.json): a root cause's team escalates to its level-1, then level-2 role"
    )
    department: str | None = None
    reason: EscalationReason | None = None
    state: Literal["open", "closed"] | None = None


# ---- rows -> models ------------------------------------------------------------------------------------------


def _pattern(row: Row[Any]) -> Pattern:
    return Pattern(
        pattern_id=row.pattern_id,
        provider_npi=row.provider_npi,
        provider_name=row.provider_name,
        department=row.department,
        root_cause=row.root_cause,
        procedure_code=row.procedure_code,
        episode=row.episode,
        status=row.status,
        case_count=row.case_count,
        post_feedback_cases=row.post_feedback_cases,
        amount_at_risk=f"{row.amount_at_risk:.2f}",
        reason_codes=list(row.reason_codes),
        last_service_date=row.last_service_date,
        opened_at=row.opened_at,
        acknowledged_at=row.acknowledged_at,
        ack_response=row.ack_response,
        resolved_at=row.resolved_at,
    )


def _case(row: Row[Any]) -> Case:
    return Case(
        case_id=row.case_id,
        claim_id=row.claim_id,
        line_number=row.line_number,
        encounter_id=row.encounter_id,
        service_date=row.service_date,
        procedure_code=row.procedure_code,
        modifiers=list(row.modifiers),
        amount=f"{row.amount:.2f}",
        reason_codes=list(row.reason_codes),
        payer_id=row.payer_id,
        post_feedback=row.post_feedback,
        denial_count=row.denial_count,
        first_denied_at=row.first_denied_at,
        last_denied_at=row.last_denied_at,
        note_id=row.note_id,
    )


def _escalation(row: Row[Any], routing: RoutingConfig) -> Escalation:
    message = EscalationRaised.model_validate_json(row.message) if row.message is not None else None
    team = routing.team_of(RootCause(row.root_cause))
    return Escalation(
        escalation_id=row.escalation_id,
        level=row.level,
        role=team.level_1 if row.level == 1 else team.level_2,  # checked at load
        team=team.name,
        reason=row.reason,
        department=row.department,
        root_cause=row.root_cause,
        pattern_id=row.pattern_id,
        provider_npi=row.provider_npi,
        state="open" if row.is_open else "closed",
        created_at=row.created_at,
        published_at=row.published_at,
        summary=row.summary,
        facts=message.facts if message else None,
    )


def _notification(row: Row[Any]) -> Notification:
    message = FeedbackNotification.model_validate_json(row.message) if row.message is not None else None
    return Notification(
        notification_id=row.notification_id,
        created_at=row.created_at,
        published_at=row.published_at,
        message=message,
    )


def encode_cursor(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The key in a cursor; ValueError for anything that is not a cursor this API made."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError("bad cursor") from error
    if not (isinstance(key, list) and len(key) == size and all(isinstance(k, str) for k in key)):
        raise ValueError("bad cursor")
    return key


# ---- the routes --------------------------------------------------------------------------------------------


class BadQuery(Exception):
    def __init__(self, fields: list[str]) -> None:
        self.fields = fields


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(
        model.model_dump_json(),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _query(model: type[Page], request: Request) -> Any:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as error:
        raise BadQuery(sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})) from None


@dataclass(frozen=True)
class Endpoint:
    path: str
    summary: str
    description: str
    response: type[BaseModel] | None  # None: HTML
    query: type[BaseModel] | None = None
    path_parameters: tuple[str, ...] = ()


ENDPOINTS = {
    "patterns": Endpoint(
        "/api/v1/patterns",
        "List patterns",
        "Patterns in pattern id order, filtered by every parameter given, in pages of `limit`.",
        PatternPage,
        PatternQuery,
    ),
    "pattern": Endpoint(
        "/api/v1/patterns/{pattern_id}",
        "One pattern with its cases, notifications and escalations",
        "Cases in service date order (no patient identifiers), the notifications sent for it and the escalations "
        "raised for it (and the systemic ones of its department and root cause).",
        PatternWithHistory,
        path_parameters=("pattern_id",),
    ),
    "escalations": Endpoint(
        "/api/v1/escalations",
        "List escalations",
        "Escalations newest first. `state=open`: its pattern is open, or, for a systemic escalation, its "
        "department still has open patterns of its root cause; `closed` otherwise.",
        EscalationPage,
        EscalationQuery,
    ),
    "report": Endpoint(
        "/report",
        "The live HTML report",
        "The same page as `docloop report --format html`, built from the store at request time.",
        None,
    ),
}


class ReadApi:
    def __init__(self, database: AsyncEngine, tokens: list[bytes], routing: RoutingConfig | None = None) -> None:
        self.database = database
        self.tokens = tokens
        self.routing = routing or RoutingConfig.load()

    def owned_by(self, role: str) -> tuple[tuple[str, int], ...]:
        """The (root cause, level) pairs whose escalations go to `role`."""
        pairs = []
        for root_cause, name in self.routing.owner.items():
            team = self.routing.teams[name]
            pairs += [(root_cause.value, level) for level, r in ((1, team.level_1), (2, team.level_2)) if r == role]
        return tuple(pairs)

    def routes(self) -> list[BaseRoute]:
        handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "patterns": self.patterns,
            "pattern": self.pattern,
            "escalations": self.escalations,
            "report": self.report,
        }
        routes: list[BaseRoute] = [
            Route(ENDPOINTS[name].path, self._guarded(handler), name=name) for name, handler in handlers.items()
        ]
        routes.append(Route("/api/v1/openapi.json", self.openapi, name="openapi"))
        return routes

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return False
        candidate = given.strip().encode()
        # Compare with every token, without stopping at a match: the time taken says nothing about the tokens.
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched

    def _guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization")
            if not self.authorized(header):
                challenge = 'Bearer realm="docloop"' + (', error="invalid_token"' if header else "")
                return JSONResponse(
                    Problem(error="unauthorized").model_dump(),
                    status_code=401,
                    headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
                )
            try:
                return await handler(request)
            except BadQuery as error:
                return _json(Problem(error="bad query parameters", fields=error.fields), 400)

        return guarded

    async def patterns(self, request: Request) -> Response:
        query: PatternQuery = _query(PatternQuery, request)
        after = None
        if query.cursor is not None:
            try:
                after = decode_cursor(query.cursor, 1)[0]
            except ValueError:
                raise BadQuery(["cursor"]) from None
        where = queries.PatternFilter(
            provider_npi=query.provider,
            department=query.department,
            root_cause=query.root_cause.value if query.root_cause else None,
            status=query.status,
        )
        async with self.database.connect() as conn:
            rows, more = await queries.patterns_page(conn, where, query.limit, after)
        items = [_pattern(row) for row in rows]
        cursor = encode_cursor([items[-1].pattern_id]) if more and items else None
        return _json(PatternPage(items=items, next_cursor=cursor))

    async def pattern(self, request: Request) -> Response:
        async with self.database.connect() as conn:
            detail = await queries.pattern_detail(conn, request.path_params["pattern_id"])
        if detail is None:
            return _json(Problem(error="no such pattern"), 404)
        return _json(
            PatternWithHistory(
                pattern=_pattern(detail.pattern),
                cases=[_case(row) for row in detail.cases],
                notifications=[_notification(row) for row in detail.notifications],
                escalations=[_escalation(row, self.routing) for row in detail.escalations],
            )
        )

    async def escalations(self, request: Request) -> Response:
        query: EscalationQuery = _query(EscalationQuery, request)
        after = None
        if query.cursor is not None:
            try:
                created, escalation_id = decode_cursor(query.cursor, 2)
                after = (datetime.fromisoformat(created), escalation_id)
            except ValueError:
                raise BadQuery(["cursor"]) from None
        where = queries.EscalationFilter(
            owned=self.owned_by(query.role) if query.role else None,
            department=query.department,
            state=query.state,
            reason=query.reason,
        )
        async with self.database.connect() as conn:
            rows, more = await queries.escalations_page(conn, where, query.limit, after)
        items = [_escalation(row, self.routing) for row in rows]
        last = items[-1] if items else None
        cursor = encode_cursor([last.created_at.isoformat(), last.escalation_id]) if more and last else None
        return _json(EscalationPage(items=items, next_cursor=cursor))

    async def report(self, request: Request) -> Response:
        from engine.report import build_report
        from engine.report_html import render_html

        report = await build_report(self.database)
        return HTMLResponse(render_html(report), headers={"Cache-Control": "no-store"})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


# ---- OpenAPI -----------------------------------------------------------------------------------------------


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in endpoint.path_parameters
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, field_schema in schema["properties"].items():
            field_schema = dict(field_schema)
            description = field_schema.pop("description", None)
            field_schema.pop("title", None)
            parameter = {"name": name, "in": "query", "required": False, "schema": field_schema}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
    return parameters


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 of the read API, generated from ENDPOINTS and the pydantic models."""
    models: list[type[BaseModel]] = [e.response for e in ENDPOINTS.values() if e.response is not None]
    models.append(Problem)
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, Any] = {}
    for name, endpoint in ENDPOINTS.items():
        if endpoint.response is None:
            content = {"text/html": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{endpoint.response.__name__}"}}}
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": content},
            "401": _error("no or wrong bearer token (header WWW-Authenticate)"),
        }
        if endpoint.query is not None:
            responses["400"] = _error("a query parameter is not valid")
        if endpoint.path_parameters:
            responses["404"] = _error("not found")
        paths[endpoint.path] = {
            "get": {
                "operationId": name,
                "summary": endpoint.summary,
                "description": endpoint.description,
                "parameters": _parameters(endpoint),
                "responses": responses,
                "security": [{"bearer": []}],
            }
        }
    schemas_ = dict(definitions["$defs"])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Docloop read API",
            "version": API_VERSION,
            "description": "Read-only access to Docloop's patterns, escalations and report, on serve's HTTP side "
            "port. Off unless DOCLOOP_API_TOKENS or DOCLOOP_API_TOKENS_FILE is set. No response carries a patient "
            f"identifier. Pages hold at most {MAX_PAGE} items.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas_,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
