"""Routing data (routing.json, the code book's owners): loaded and checked at start, with errors that say where."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from engine.domain.codebook import CodeBook
from engine.domain.routing_config import RoutingConfig, RoutingDataError
from schemas import RootCause

BOOK = CodeBook.load()
DATA: dict[str, Any] = json.loads(resources.files("engine.domain").joinpath("data/routing.json").read_text("utf-8"))
CODEBOOK: dict[str, Any] = json.loads(
    resources.files("engine.domain").joinpath("data/codebook.json").read_text("utf-8")
)


def changed(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(DATA)
    target: Any = data
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


def test_the_shipped_routing_loads_and_every_root_cause_has_an_owner_with_two_levels() -> None:
    config = RoutingConfig.load()
    for cause in RootCause:
        team = config.team_of(cause)
        assert team.level_1 in config.roles and team.level_2 in config.roles
    assert config.route.routes  # a tree, not a single route


def test_clinical_department_leads_own_only_clinical_documentation() -> None:
    config = RoutingConfig.load()
    led_by_department = {c for c in RootCause if config.team_of(c).level_1 == "department_lead"}
    assert led_by_department == {c for c in RootCause if BOOK.is_clinician_facing(c)}
    for cause in (RootCause.ELIGIBILITY, RootCause.AUTHORIZATION_MISSING):
        assert config.team_of(cause).name == "patient_access"
        assert config.team_of(cause).level_2 == "patient_access_director"


def test_children_inherit_timing_from_their_parent() -> None:
    config = RoutingConfig.load()
    escalations = config.routes_by_name["escalations"]
    assert escalations.group_interval == config.route.group_interval == timedelta(days=1)
    assert config.routes_by_name["billing pre-bill worklist"].group_interval == timedelta(hours=6)


@pytest.mark.parametrize(
    ("path", "value", "where", "problem"),
    [
        ("roles.chief_of_staff", {"label": "x", "scope": "organization"}, "roles.chief_of_staff", "unknown role"),
        ("roles.coding_manager.scope", "ward", "roles.coding_manager.scope", "department or organization"),
        ("teams.coding.level_1", "coding_lead", "teams.coding.level_1", "does not define"),
        ("teams.billing.label", "", "teams.billing.label", "non-empty string"),
        ("teams.patient_access", KeyError, "teams", "no team here has that name"),
        ("teams.coding.clinician_facing", True, "teams.coding.clinician_facing", "disagrees with the code book"),
        ("route.group_wait", "soon", "route.group_wait", "not a duration"),
        ("route.match", {"kind": ["reminder"]}, "route.match", "matches everything"),
        ("route.routes.0.match", {}, "route.routes[0].match", "at least one matcher"),
        ("route.routes.0.match", {"colour": ["red"]}, "route.routes[0].match.colour", "unknown label"),
        ("route.routes.0.match", {"kind": "pre_bill_alert"}, "route.routes[0].match.kind", "non-empty list"),
        ("route.routes.1.name", "clinician pre-bill alert", "route.routes[1].name", "same name"),
        ("route.routes.1.delivery", "held", "route.routes[1].delivery", "send or digest"),
        ("route.routes.0.overflow", "drop", "route.routes[0].overflow", "digest or held"),
        ("route.routes.0.group_by", ["pattern_id"], "route.routes[0].group_by", "includes recipient"),
        ("route.routes.0.group_wait", "1h", "route.routes[0].group_wait", "sends at once"),
        ("route.routes.1.group_interval", "0m", "route.routes[1].group_interval", "longer than zero"),
        ("inhibit_rules.0.equal", ["ward"], "inhibit_rules[0].equal", "list of labels"),
        ("inhibit_rules.0.source", {}, "inhibit_rules[0]", "source and target"),
    ],
)
def test_invalid_routing_is_refused_with_file_path_and_problem(path: str, value: Any, where: str, problem: str) -> None:
    with pytest.raises(RoutingDataError) as refused:
        RoutingConfig.from_dict(changed(path, value), BOOK)
    assert refused.value.file == "routing.json"
    assert refused.value.path == where
    assert problem in refused.value.problem
    assert str(refused.value).startswith(f"routing.json: {where}: ")


def test_a_file_that_is_not_json_names_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "routing.json"
    broken.write_text('{"roles": {\n  oops }', encoding="utf-8")
    with pytest.raises(RoutingDataError, match=r"^routing\.json: \(file\): not JSON .* line 2"):
        RoutingConfig.load(broken)


def test_a_root_cause_without_an_owner_is_refused_by_the_code_book() -> None:
    data = copy.deepcopy(CODEBOOK)
    del data["root_causes"]["eligibility"]["owner"]
    with pytest.raises(ValueError, match=r"codebook\.json: root_causes\.eligibility\.owner: missing"):
        CodeBook.from_dict(data)
