"""The read API over the scenario on both stores: filters, pages, one pattern's history, escalations open and
closed, bearer tokens, and no patient identifier in any answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.api import MAX_PAGE, ReadApi, openapi_document
from engine.domain.routing_config import RoutingConfig
from engine.http import build_app
from engine.service import Processor, RawEvent
from engine.settings import Settings
from engine.store import tables as t
from schemas import RootCause
from tests.support.scenario import GARCIA, NGUYEN, RIVERA, scenario_lines

WALL = datetime(2026, 11, 27, 12, tzinfo=UTC)
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTING = RoutingConfig.load()


async def _nothing(request: Any) -> Any:
    raise AssertionError("not called")


@pytest.fixture
async def client(database: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    processor = Processor(Settings(database_url="sqlite://"), database, wall_clock=lambda: WALL)
    lines = scenario_lines()
    await processor.apply_batch([RawEvent(line.encode(), None, f"scenario.jsonl:{i}") for i, line in enumerate(lines)])
    await processor.run_department_stage(everything=True)  # systemic escalations; messages routed to the outbox
    app = build_app(_nothing, _nothing, _nothing, ReadApi(database, [b"other", TOKEN.encode()]).routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://side") as http:
        yield http


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    assert "MRN-" not in response.text
    assert "patient_ref" not in response.text and "patient_hash" not in response.text
    return response.json()


async def all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await get(client, path, **params, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def test_patterns_filter_and_page_without_gaps_or_repeats(
    client: httpx.AsyncClient, database: AsyncEngine
) -> None:
    async with database.connect() as conn:
        stored = {row.pattern_id: row for row in await conn.execute(select(t.patterns))}
    everything = await all_pages(client, "/api/v1/patterns", limit=2)
    assert [p["pattern_id"] for p in everything] == sorted(stored)  # every pattern once, in id order

    rivera = await all_pages(client, "/api/v1/patterns", provider=RIVERA)
    assert rivera and {p["provider_npi"] for p in rivera} == {RIVERA}
    assert len(rivera) == sum(1 for row in stored.values() if row.provider_npi == RIVERA)

    open_em = await all_pages(
        client, "/api/v1/patterns", department="Internal Medicine", root_cause="em_level_unsupported", status="open"
    )
    expected = {
        pid
        for pid, row in stored.items()
        if (row.department, row.root_cause, row.status) == ("Internal Medicine", "em_level_unsupported", "open")
    }
    assert {p["pattern_id"] for p in open_em} == expected and len(expected) >= 1  # RIVERA; the others dormant
    first = next(p for p in open_em if p["provider_npi"] == RIVERA)
    assert first["amount_at_risk"] == f"{stored[first['pattern_id']].amount_at_risk:.2f}"


async def test_bad_parameters_are_named_not_echoed(client: httpx.AsyncClient) -> None:
    for params, field in (
        ({"limit": MAX_PAGE + 1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"root_cause": "MRN-77"}, "root_cause"),
        ({"status": "maybe"}, "status"),
        ({"cursor": "MRN-77!"}, "cursor"),
    ):
        response = await client.get("/api/v1/patterns", params=params, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["fields"] == [field] and "MRN" not in response.text
    assert (await client.get("/api/v1/patterns/nope", headers=AUTH)).status_code == 404


async def test_one_pattern_carries_its_cases_notifications_and_escalations(client: httpx.AsyncClient) -> None:
    [nguyen] = await all_pages(client, "/api/v1/patterns", provider=NGUYEN)
    detail = await get(client, f"/api/v1/patterns/{nguyen['pattern_id']}")
    assert detail["pattern"] == nguyen
    assert len(detail["cases"]) == nguyen["case_count"] == 3
    assert all("patient_hash" not in case for case in detail["cases"])
    kinds = {(n["message"]["kind"], n["message"]["audience"]) for n in detail["notifications"]}
    assert ("pattern_opened", "clinician") in kinds and ("pattern_opened", "billing") in kinds
    assert all(n["message"]["pattern_id"] == nguyen["pattern_id"] for n in detail["notifications"])
    assert {e["pattern_id"] for e in detail["escalations"]} == {nguyen["pattern_id"]}
    [escalation] = [e for e in detail["escalations"] if e["reason"] == "amount_at_risk"]
    team = ROUTING.team_of(RootCause(nguyen["root_cause"]))  # the owner team's level-2 role (routing.json)
    assert (escalation["level"], escalation["role"], escalation["team"]) == (2, team.level_2, team.name)
    # NGUYEN's pattern went dormant (no visits to judge by): not open, so neither is its escalation.
    assert nguyen["status"] == "dormant"
    assert escalation["provider_npi"] == NGUYEN and escalation["state"] == "closed"
    assert escalation["facts"]["amount_at_risk"] == nguyen["amount_at_risk"]


async def test_escalations_filter_by_owner_and_state(client: httpx.AsyncClient, database: AsyncEngine) -> None:
    everything = await all_pages(client, "/api/v1/escalations", limit=1)
    assert len({e["escalation_id"] for e in everything}) == len(everything) >= 4
    created = [e["created_at"] for e in everything]
    assert created == sorted(created, reverse=True)  # newest first
    for role in ROUTING.roles:  # each escalation under exactly the role its owner team names for its level
        owned = await all_pages(client, "/api/v1/escalations", role=role)
        assert all(e["role"] == role for e in owned)
        expected = [
            e for e in everything if getattr(ROUTING.team_of(RootCause(e["root_cause"])), f"level_{e['level']}") == role
        ]
        assert owned == expected
    leads = await all_pages(client, "/api/v1/escalations", role="department_lead")
    assert leads and all(e["level"] == 1 and e["team"] == "clinical_documentation" for e in leads)
    systemic = await all_pages(client, "/api/v1/escalations", reason="systemic")
    assert [e["pattern_id"] for e in systemic] == [None] and systemic[0]["state"] == "open"
    async with database.connect() as conn:
        open_ids = set((await conn.scalars(select(t.patterns.c.pattern_id).where(t.patterns.c.status == "open"))).all())
    closed_before = await all_pages(client, "/api/v1/escalations", state="closed")
    assert [e["pattern_id"] not in open_ids for e in closed_before] == [True] * len(closed_before)
    assert all(e["state"] == "closed" for e in closed_before)

    # GARCIA's pattern resolves: its escalations close; the systemic one stays open while its pair has open patterns.
    [garcia] = await all_pages(client, "/api/v1/patterns", provider=GARCIA)
    async with database.begin() as conn:
        await conn.execute(
            update(t.patterns).where(t.patterns.c.pattern_id == garcia["pattern_id"]).values(status="resolved")
        )
    closed = await all_pages(client, "/api/v1/escalations", state="closed")
    assert {e["pattern_id"] for e in closed} - {e["pattern_id"] for e in closed_before} == {garcia["pattern_id"]}
    still_open = await all_pages(client, "/api/v1/escalations", state="open")
    assert len(still_open) + len(closed) == len(everything)
    assert systemic[0]["escalation_id"] in {e["escalation_id"] for e in still_open}

    async with database.begin() as conn:  # the department's open patterns of that root cause all resolve
        await conn.execute(
            update(t.patterns)
            .where(t.patterns.c.department == systemic[0]["department"])
            .where(t.patterns.c.root_cause == systemic[0]["root_cause"])
            .values(status="resolved")
        )
    closed_ids = {e["escalation_id"] for e in await all_pages(client, "/api/v1/escalations", state="closed")}
    assert systemic[0]["escalation_id"] in closed_ids


async def test_every_route_needs_a_valid_bearer_token(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/patterns", "/api/v1/patterns/x", "/api/v1/escalations", "/report"):
        missing = await client.get(path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="docloop"'
        wrong = await client.get(path, headers={"Authorization": "Bearer s3cret-toke"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert (await client.get(path, headers={"Authorization": f"Basic {TOKEN}"})).status_code == 401
    assert (await client.get("/api/v1/patterns", headers={"Authorization": "Bearer other"})).status_code == 200


async def test_the_live_report_is_the_html_report(client: httpx.AsyncClient) -> None:
    response = await client.get("/report", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<svg" in response.text and "MRN-" not in response.text


async def test_the_openapi_document_describes_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document == json.loads(json.dumps(openapi_document()))
    assert set(document["paths"]) == {
        "/api/v1/patterns",
        "/api/v1/patterns/{pattern_id}",
        "/api/v1/escalations",
        "/report",
    }
    names = {p["name"] for p in document["paths"]["/api/v1/patterns"]["get"]["parameters"]}
    assert names == {"provider", "department", "root_cause", "status", "limit", "cursor"}
    assert "patient_hash" not in json.dumps(document) and "patient_ref" not in json.dumps(document)


def test_the_api_names_every_pattern_status_the_engine_has() -> None:
    from typing import get_args

    from engine.api import PatternStatusName
    from engine.domain.model import PatternStatus

    assert set(get_args(PatternStatusName)) == {s.value for s in PatternStatus}
