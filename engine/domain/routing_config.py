"""Routing as data: who owns each root cause, whom they escalate to, and how messages reach people.

`data/routing.json` is edited by a revenue-cycle team, like the code book by coders. It is read once at start
and checked completely: every problem is reported with the file, the path inside it and what is wrong, so a
typo stops the engine with a sentence, not a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from engine.domain.codebook import CodeBook
from schemas import RootCause
from schemas.outbound import EscalationRole

# What a matcher, an `equal` list or `group_by` may name (see Router.labels).
LABELS = frozenset(
    {
        "stream",
        "kind",
        "audience",
        "recipient",
        "root_cause",
        "category",
        "owner",
        "department",
        "provider_npi",
        "procedure_code",
        "pattern_id",
        "level",
        "reason",
        "scope",
    }
)
Delivery = Literal["send", "digest"]
Overflow = Literal["digest", "held"]
ROLES: frozenset[str] = frozenset(get_args(EscalationRole))
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class RoutingDataError(ValueError):
    """A problem in a routing data file: `file`, `path` inside it, and `problem`, in one sentence."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        super().__init__(f"{file}: {path}: {problem}")
        self.file, self.path, self.problem = file, path, problem


@dataclass(frozen=True)
class Role:
    name: str
    label: str
    scope: Literal["department", "organization"]  # a department lead per department; others hospital-wide


@dataclass(frozen=True)
class Team:
    name: str
    label: str
    clinician_facing: bool
    level_1: str
    level_2: str
    ask: str


Matchers = Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class Route:
    """One node of the routing tree. Children inherit delivery, group_by and timing unless they set them."""

    name: str
    match: Matchers
    delivery: Delivery
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    overflow: Overflow
    continue_: bool = False
    routes: tuple[Route, ...] = ()
    parent: str | None = None  # name of the parent route: where a `send` route's overflow is digested

    def matches(self, labels: Mapping[str, tuple[str, ...]]) -> bool:
        return matches(self.match, labels)


@dataclass(frozen=True)
class InhibitRule:
    """While a message matching `source` is open, messages matching `target` with equal `equal` labels are held."""

    name: str
    source: Matchers
    target: Matchers
    equal: tuple[str, ...]


@dataclass(frozen=True)
class RoutingConfig:
    roles: dict[str, Role]
    teams: dict[str, Team]
    owner: dict[RootCause, str]
    category: dict[RootCause, str]
    route: Route
    inhibit_rules: tuple[InhibitRule, ...]
    routes_by_name: dict[str, Route] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None, codebook: CodeBook | None = None) -> RoutingConfig:
        if path is None:
            text = resources.files("engine.domain").joinpath("data/routing.json").read_text("utf-8")
            name = "routing.json"
        else:
            text, name = path.read_text("utf-8"), path.name
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise RoutingDataError(name, "(file)", f"not JSON ({error.msg} at line {error.lineno})") from None
        return cls.from_dict(data, codebook or CodeBook.load(), name)

    @classmethod
    def from_dict(cls, data: Any, codebook: CodeBook, file: str = "routing.json") -> RoutingConfig:
        return _Reader(file, codebook).config(data)

    def team_of(self, root_cause: RootCause) -> Team:
        return self.teams[self.owner[root_cause]]

    def role_label(self, role: str) -> str:
        return self.roles[role].label


def matches(matchers: Matchers, labels: Mapping[str, tuple[str, ...]]) -> bool:
    """Every matcher holds: each of the label's values is one the matcher lists (a label without values fails)."""
    for label, allowed in matchers.items():
        values = labels.get(label, ())
        if not values or any(v not in allowed for v in values):
            return False
    return True


def parse_duration(text: str) -> timedelta | None:
    found = _DURATION.match(text)
    if not found:
        return None
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


@dataclass(frozen=True)
class _Inherited:
    delivery: Delivery = "digest"
    group_by: tuple[str, ...] = ("recipient",)
    group_wait: timedelta = timedelta(0)
    group_interval: timedelta = timedelta(days=1)
    repeat_interval: timedelta = timedelta(0)  # a send route sends every message unless it sets one
    overflow: Overflow = "digest"


class _Reader:
    """Walks the JSON document with a path, so every error names where it is."""

    def __init__(self, file: str, codebook: CodeBook) -> None:
        self.file = file
        self.codebook = codebook
        self.route_names: set[str] = set()
        self.routes_by_name: dict[str, Route] = {}

    def fail(self, path: str, problem: str) -> RoutingDataError:
        return RoutingDataError(self.file, path, problem)

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be an object")
        return value

    def text(self, parent: dict[str, Any], key: str, path: str) -> str:
        value = parent.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{path}.{key}", "missing or not a non-empty string")
        return value

    def config(self, data: Any) -> RoutingConfig:
        root = self.obj(data, "(file)")
        roles = self.roles(root.get("roles"), "roles")
        teams = self.teams(root.get("teams"), "teams", roles)
        for cause in RootCause:
            owner = self.codebook.owner.get(cause)
            if owner not in teams:
                raise self.fail(
                    "teams", f"the code book names owner {owner!r} for {cause.value}, and no team here has that name"
                )
            if teams[owner].clinician_facing != self.codebook.is_clinician_facing(cause):
                raise self.fail(
                    f"teams.{owner}.clinician_facing",
                    f"disagrees with the code book's `clinician` flag of {cause.value}: a team that hears about a "
                    "root cause must be one its clinicians are told about, and the other way round",
                )
        route = self.route(root.get("route"), "route", _Inherited(), None)
        inhibit = root.get("inhibit_rules", [])
        if not isinstance(inhibit, list):
            raise self.fail("inhibit_rules", "must be a list")
        rules = tuple(self.inhibit_rule(rule, f"inhibit_rules[{i}]") for i, rule in enumerate(inhibit))
        return RoutingConfig(
            roles=roles,
            teams=teams,
            owner=dict(self.codebook.owner),
            category=dict(self.codebook.category),
            route=route,
            inhibit_rules=rules,
            routes_by_name=self.routes_by_name,
        )

    def roles(self, value: Any, path: str) -> dict[str, Role]:
        roles = {}
        for name, entry in self.obj(value, path).items():
            here = f"{path}.{name}"
            if name not in ROLES:
                raise self.fail(here, f"unknown role; the contract's roles are {', '.join(sorted(ROLES))}")
            entry = self.obj(entry, here)
            scope = entry.get("scope")
            if scope not in ("department", "organization"):
                raise self.fail(f"{here}.scope", "must be department or organization")
            roles[name] = Role(name, self.text(entry, "label", here), scope)
        return roles

    def teams(self, value: Any, path: str, roles: dict[str, Role]) -> dict[str, Team]:
        teams = {}
        for name, entry in self.obj(value, path).items():
            here = f"{path}.{name}"
            entry = self.obj(entry, here)
            levels = []
            for level in ("level_1", "level_2"):
                role = self.text(entry, level, here)
                if role not in roles:
                    raise self.fail(f"{here}.{level}", f"names role {role!r}, which `roles` does not define")
                levels.append(role)
            clinician = entry.get("clinician_facing")
            if not isinstance(clinician, bool):
                raise self.fail(f"{here}.clinician_facing", "missing or not true/false")
            teams[name] = Team(
                name, self.text(entry, "label", here), clinician, levels[0], levels[1], self.text(entry, "ask", here)
            )
        if not teams:
            raise self.fail(path, "must define at least one team")
        return teams

    def matchers(self, value: Any, path: str) -> dict[str, frozenset[str]]:
        found = {}
        for label, allowed in self.obj(value, path).items():
            if label not in LABELS:
                raise self.fail(f"{path}.{label}", f"unknown label; labels are {', '.join(sorted(LABELS))}")
            if not isinstance(allowed, list) or not allowed or not all(isinstance(v, str) for v in allowed):
                raise self.fail(f"{path}.{label}", "must be a non-empty list of strings (equality matchers)")
            found[label] = frozenset(allowed)
        return found

    def duration(self, entry: dict[str, Any], key: str, path: str, default: timedelta) -> timedelta:
        if key not in entry:
            return default
        value = entry[key]
        parsed = parse_duration(value) if isinstance(value, str) else None
        if parsed is None:
            raise self.fail(f"{path}.{key}", "not a duration such as 30m, 4h or 1d")
        return parsed

    def route(self, value: Any, path: str, inherited: _Inherited, parent: Route | None) -> Route:
        entry = self.obj(value, path)
        name = self.text(entry, "name", path)
        if name in self.route_names:
            raise self.fail(f"{path}.name", "another route has the same name; names must be unique")
        self.route_names.add(name)
        if parent is None and entry.get("match"):
            raise self.fail(f"{path}.match", "the root route matches everything and takes no matchers")
        match = self.matchers(entry.get("match", {}), f"{path}.match")
        if parent is not None and not match:
            raise self.fail(f"{path}.match", "a child route needs at least one matcher")
        delivery = entry.get("delivery", inherited.delivery)
        if delivery not in ("send", "digest"):
            raise self.fail(f"{path}.delivery", "must be send or digest (held is decided by silences and inhibition)")
        overflow = entry.get("overflow", inherited.overflow)
        if overflow not in ("digest", "held"):
            raise self.fail(f"{path}.overflow", "must be digest or held")
        group_by = entry.get("group_by", list(inherited.group_by))
        if not isinstance(group_by, list) or "recipient" not in group_by:
            raise self.fail(f"{path}.group_by", "must be a list of labels that includes recipient")
        for label in group_by:
            if label not in LABELS:
                raise self.fail(f"{path}.group_by", f"unknown label {label!r}")
        if delivery == "send" and "group_wait" in entry:
            raise self.fail(f"{path}.group_wait", "a send route sends at once; wait in a digest route instead")
        settings = _Inherited(
            delivery=delivery,
            group_by=tuple(group_by),
            group_wait=timedelta(0)
            if delivery == "send"
            else self.duration(entry, "group_wait", path, inherited.group_wait),
            group_interval=self.duration(entry, "group_interval", path, inherited.group_interval),
            repeat_interval=self.duration(entry, "repeat_interval", path, inherited.repeat_interval),
            overflow=overflow,
        )
        if delivery == "digest" and settings.group_interval <= timedelta(0):
            raise self.fail(f"{path}.group_interval", "must be longer than zero for a digest route")
        if delivery == "send" and overflow == "digest" and (parent is None or parent.delivery != "digest"):
            raise self.fail(f"{path}.overflow", "digest overflow needs a parent route that digests")
        keep_going = entry.get("continue", False)
        if not isinstance(keep_going, bool):
            raise self.fail(f"{path}.continue", "must be true or false")
        node = Route(
            name=name,
            match=match,
            delivery=delivery,
            group_by=settings.group_by,
            group_wait=settings.group_wait,
            group_interval=settings.group_interval,
            repeat_interval=settings.repeat_interval,
            overflow=overflow,
            continue_=keep_going,
            parent=parent.name if parent else None,
        )
        children = entry.get("routes", [])
        if not isinstance(children, list):
            raise self.fail(f"{path}.routes", "must be a list")
        built = tuple(self.route(child, f"{path}.routes[{i}]", settings, node) for i, child in enumerate(children))
        node = replace(node, routes=built)
        self.routes_by_name[name] = node
        return node

    def inhibit_rule(self, value: Any, path: str) -> InhibitRule:
        entry = self.obj(value, path)
        source = self.matchers(entry.get("source", {}), f"{path}.source")
        target = self.matchers(entry.get("target", {}), f"{path}.target")
        if not source or not target:
            raise self.fail(path, "needs source and target matchers")
        equal = entry.get("equal", [])
        if not isinstance(equal, list) or not all(isinstance(e, str) and e in LABELS for e in equal):
            raise self.fail(f"{path}.equal", "must be a list of labels")
        return InhibitRule(self.text(entry, "name", path), source, target, tuple(equal))
