"""`docloop report`: what the loop knows now: where the money is, what is escalated to whom, and whether feedback
worked. `build_report` returns plain data (the JSON format); the text, CSV and HTML renderings read only that data,
so every number they show is a number `--format json` prints."""

from __future__ import annotations

import csv
import io
import json
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from itertools import accumulate
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.codebook import CodeBook
from engine.domain.routing_config import RoutingConfig
from engine.effect import PatternFacts, estimate_effect
from engine.store import tables as t
from engine.store.routing import load_volume
from engine.volume import Count, summarize
from schemas import RootCause

UNDERCODED = "em_level_undercoded"
UNDERCODING_DEFINITION = (
    "Signed notes whose documented MDM or total time supports a higher office E/M level than the code on the note, "
    "grouped into patterns like denials (no denial needed). unbilled_estimate: the sum over those visits of the rate "
    "of the supported code minus the rate of the code selected (engine/domain/data/em_rates.json, rough figures, "
    "not a fee schedule). Not included in any denial figure (amounts at risk, open patterns, effect)."
)

DEFAULT_LIMIT = 20
TREND_WEEKS = 4
AT_RISK = "open"  # the status whose patterns hold dollars at risk

EFFECT_DEFINITION = (
    "Denial cases per 100 signed notes of the pattern's provider. Before: the pattern's cases with a service date "
    "from its first case up to the day before the feedback date, per 100 of the provider's notes with a service "
    "date in the same span. After: the cases with a service date after the feedback date, per 100 of the "
    "provider's notes with a service date after the feedback date, up to the report clock (for a resolved pattern, "
    "up to its resolution date: later cases belong to a new episode). The feedback date itself is in neither span. "
    "No notes in a span: n/a. Overall, and per department and root cause: the sums of cases and of notes over the "
    "patterns of clinician-facing root causes (the ones clinicians get feedback on) that have notes in both spans, "
    "so that before and after compare the same patterns."
)
AT_RISK_DEFINITION = (
    "Per week (Monday to Sunday, the last one up to the clock): the denied amounts of the cases, by the time they "
    "were first denied, of the patterns open at the end of that week (opened, not yet resolved). Patterns whose "
    "status is now neither open nor resolved count until their last known change only if they are open now."
)


# ---- labels (data: engine/domain/data/report_labels.json) -------------------------------------------------------


@cache
def labels() -> dict[str, Any]:
    text = resources.files("engine.domain").joinpath("data/report_labels.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def root_cause_label(root_cause: str) -> str:
    return str(labels()["root_causes"].get(root_cause, root_cause))


def reason_label(reason: str) -> str:
    return str(labels()["reasons"].get(reason, reason))


@cache
def routing() -> RoutingConfig:
    return RoutingConfig.load()


def owner_label(owner: str) -> str:
    """The role's name from routing.json (the same words the escalation's summary uses), capitalised."""
    role = routing().roles.get(owner)
    return role.label[:1].upper() + role.label[1:] if role else owner


def status_symbol(status: str) -> str:
    """A symbol per status so that status never depends on colour; unknown statuses get a neutral dot."""
    entry = labels()["statuses"].get(status)
    return str(entry["symbol"]) if entry else "•"


def status_text(status: str) -> str:
    entry = labels()["statuses"].get(status)
    return f"{status_symbol(status)} {entry['label'] if entry else status}"


# ---- small helpers -----------------------------------------------------------------------------------------------


class DailyCounts:
    """Counts per day, answering "how many between two dates" by binary search over running sums."""

    def __init__(self, counts: Iterable[tuple[date, int]] = ()) -> None:
        pairs = sorted(counts)
        self.days = [day for day, _ in pairs]
        self._running = [0, *accumulate(n for _, n in pairs)]

    @property
    def first_day(self) -> date | None:
        return self.days[0] if self.days else None

    def between(self, first: date, last: date) -> int:
        """The count of days first..last, both included (0 when last is before first)."""
        if last < first:
            return 0
        return self._running[bisect_right(self.days, last)] - self._running[bisect_left(self.days, first)]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def two_providers_note(totals: dict[str, Any]) -> str:
    """What the amount at risk says of claim lines denied under more than one provider (in each one's pattern)."""
    lines = totals.get("lines_of_two_providers", 0)
    if not lines:
        return ""
    amount = dollars(totals["amount_of_two_providers"])
    return (
        f" ({plural(lines, 'claim line')} denied under more than one provider: {amount} of it counted in each one's"
        " patterns)"
    )


def co_signed_note(undercoding: dict[str, Any]) -> str:
    """What the undercoding line says of visits two clinicians documented (counted once in the estimate)."""
    visits = undercoding.get("co_signed_visits", 0)
    if not visits:
        return ""
    return f" ({plural(visits, 'visit')} documented by two clinicians, each counted once)"


def _money(amounts: Iterable[Decimal]) -> str:
    return f"{sum(amounts, Decimal('0')):.2f}"


def week_start(day: date) -> date:
    """Weeks start on Monday (ISO 8601)."""
    return day - timedelta(days=day.weekday())


def _weeks(first: date, last: date) -> list[date]:
    first, last = week_start(first), week_start(last)
    return [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]


def _weekly(day_counts: Iterable[tuple[date, int]]) -> dict[str, int]:
    weeks: Counter[date] = Counter()
    for day, count in day_counts:
        weeks[week_start(day)] += count
    return {week.isoformat(): weeks[week] for week in sorted(weeks)}


def _per_100(cases: int, notes: int) -> float | None:
    return round(100 * cases / notes, 1) if notes else None


def _by_money(amount_key: str = "amount_at_risk", count_key: str = "cases") -> Callable[[dict[str, Any]], Any]:
    """Sort key: most dollars at risk first, then most cases."""
    return lambda row: (-Decimal(row[amount_key]), -row[count_key])


def _days(later: datetime, earlier: datetime) -> int:
    return max((later - earlier).days, 0)


# ---- building the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One provider's or one department's page; both None: the whole store."""

    provider: str | None = None
    department: str | None = None

    @property
    def everything(self) -> bool:
        return self.provider is None and self.department is None


class UnknownScope(LookupError):
    """The provider or department named is not in the store."""


async def known_departments(database: AsyncEngine) -> list[str]:
    async with database.connect() as conn:
        rows = await conn.execute(select(t.patterns.c.department).distinct())
        return sorted(r for (r,) in rows)


async def resolve_scope(database: AsyncEngine, provider: str | None, department: str | None) -> Scope:
    """Checks that the provider or department exists; a department matches regardless of case."""
    if department is not None:
        names = await known_departments(database)
        match = [n for n in names if n.casefold() == department.strip().casefold()]
        if not match:
            raise UnknownScope(f"no department named {department!r} in the store (known: {', '.join(names) or '-'})")
        department = match[0]
    if provider is not None:
        async with database.connect() as conn:
            seen = (
                await conn.execute(select(t.patterns.c.provider_npi).where(t.patterns.c.provider_npi == provider))
            ).first() or (await conn.execute(select(t.providers.c.npi).where(t.providers.c.npi == provider))).first()
        if not seen:
            raise UnknownScope(f"no provider with NPI {provider} in the store")
    return Scope(provider, department)


async def build_report(
    database: AsyncEngine, scope: Scope | None = None, denial_lag_days: int | None = None
) -> dict[str, Any]:
    """The report as plain data (JSON-ready); text, CSV and HTML renderings read only this."""
    scope = scope or Scope()
    if denial_lag_days is None:
        from engine.settings import Settings  # the configured lag, unless the caller says

        denial_lag_days = Settings().denial_lag_days
    codebook = CodeBook.load()
    reported = t.patterns.c.status != "pending"
    in_scope = [reported]
    if scope.provider is not None:
        in_scope.append(t.patterns.c.provider_npi == scope.provider)
    if scope.department is not None:
        in_scope.append(t.patterns.c.department == scope.department)
    scoped = and_(*in_scope)
    scoped_ids = select(t.patterns.c.pattern_id).where(scoped)
    async with database.connect() as conn:
        # The latest event time any task has seen (each task has its own clock).
        clock_row = (await conn.execute(select(func.max(t.tasks.c.clock).label("clock")))).first()
        volume_counts = await load_volume(conn)
        case_range = (
            await conn.execute(
                select(
                    func.min(t.cases.c.first_denied_at),
                    func.max(t.cases.c.last_denied_at),
                    func.min(t.cases.c.service_date),
                    func.max(t.cases.c.service_date),
                )
            )
        ).one()
        note_range = (
            await conn.execute(
                select(
                    func.min(t.notes.c.signed_at),
                    func.max(t.notes.c.signed_at),
                    func.min(t.notes.c.service_date),
                    func.max(t.notes.c.service_date),
                )
            )
        ).one()
        provider_rows = (await conn.execute(select(t.providers))).all()
        pattern_rows = (await conn.execute(select(t.patterns).where(scoped))).all()
        escalation_rows = (
            await conn.execute(
                select(t.escalations).order_by(t.escalations.c.created_at, t.escalations.c.escalation_id)
            )
        ).all()
        # The escalation as published says who it went to and which providers it names.
        # Retention deletes published outbox rows (and empties kept ones), so each field read from a message
        # has a fallback from the store's own tables.
        escalation_messages = {
            message_id: json.loads(value)
            for message_id, value in await conn.execute(
                select(t.outbox.c.message_id, t.outbox.c.value).where(
                    t.outbox.c.stream == "escalations", t.outbox.c.value.is_not(None)
                )
            )
        }
        open_pairs: dict[tuple[str, str], set[str]] = defaultdict(set)
        for d, rc, npi in await conn.execute(
            select(t.patterns.c.department, t.patterns.c.root_cause, t.patterns.c.provider_npi)
            .where(t.patterns.c.status == AT_RISK)
            .distinct()
        ):
            open_pairs[(d, rc)].add(npi)
        # Cases per (pattern, service day) and notes per (provider, service day) feed the weekly charts and the loop
        # effect; both are bounded by days, not by events, so the report stays cheap on a large store.
        case_day_rows = (
            await conn.execute(
                select(t.cases.c.pattern_id, t.cases.c.service_date, func.count())
                .where(t.cases.c.pattern_id.in_(scoped_ids))
                .group_by(t.cases.c.pattern_id, t.cases.c.service_date)
            )
        ).all()
        note_day_rows = (
            await conn.execute(
                select(t.notes.c.provider_npi, t.notes.c.service_date, func.count())
                .where(t.notes.c.provider_npi.in_(select(t.patterns.c.provider_npi).where(scoped)))
                .group_by(t.notes.c.provider_npi, t.notes.c.service_date)
            )
        ).all()
        denial_rows = (
            await conn.execute(
                select(t.cases.c.pattern_id, t.cases.c.first_denied_at, t.cases.c.amount).where(
                    t.cases.c.pattern_id.in_(scoped_ids)
                )
            )
        ).all()
        # The effect estimate counts each case once by its key and each note once per (provider, procedure),
        # over the whole store (its comparison group is the providers never told): not scoped.
        effect_case_rows = (
            await conn.execute(
                select(
                    t.cases.c.provider_npi,
                    t.cases.c.root_cause,
                    t.cases.c.procedure_code,
                    t.cases.c.service_date,
                    func.count(),
                )
                .where(
                    t.cases.c.pattern_id.not_in(
                        select(t.patterns.c.pattern_id).where(t.patterns.c.status == "withdrawn")
                    )
                )
                .group_by(
                    t.cases.c.provider_npi, t.cases.c.root_cause, t.cases.c.procedure_code, t.cases.c.service_date
                )
            )
        ).all()
        note_code_rows = (
            await conn.execute(select(t.notes.c.provider_npi, t.notes.c.service_date, t.notes.c.procedure_codes))
        ).all()
        # A visit two clinicians sign is a case of each author whose note shows the gap (each pattern counts it),
        # but it was billed once: the undercoding total counts it once, at the larger estimate.
        c = t.cases.c
        undercoded_ids = select(t.patterns.c.pattern_id).where(
            scoped, t.patterns.c.root_cause == UNDERCODED, t.patterns.c.status != "withdrawn"
        )
        co_signed = (
            await conn.execute(
                select(func.sum(c.amount), func.max(c.amount))
                .where(c.pattern_id.in_(undercoded_ids))
                .group_by(c.encounter_id, c.procedure_code)
                .having(func.count() > 1)
            )
        ).all()
        # A claim line denied under one rendering provider and again under another (a corrected NPI) is a case of
        # each, in each one's pattern and figures: the totals say how much of the amount at risk that counts twice.
        # Only the cases of open patterns in scope are read (by the pattern index): a report stays cheap.
        line = (c.claim_id, c.line_number, c.root_cause)
        open_ids = select(t.patterns.c.pattern_id).where(
            scoped, t.patterns.c.status == AT_RISK, t.patterns.c.root_cause != UNDERCODED
        )
        of_open = c.pattern_id.in_(open_ids)
        relined = select(*line).where(of_open).group_by(*line).having(func.count() > 1).subquery()
        relined_rows = (
            await conn.execute(
                select(*line, c.amount)
                .where(of_open)
                .join(relined, and_(*(x == relined.c[x.name] for x in line)))
            )
        ).all()
        effect_pattern_rows = (
            await conn.execute(
                select(
                    t.patterns.c.provider_npi,
                    t.patterns.c.root_cause,
                    t.patterns.c.procedure_code,
                    t.patterns.c.opened_at,
                ).where(reported, t.patterns.c.status != "withdrawn", t.patterns.c.root_cause != UNDERCODED)
            )
        ).all()

    clock: datetime | None = clock_row.clock if clock_row else None
    names = {r.npi: r for r in provider_rows}
    data_range = _data_range(case_range, note_range)

    patterns = [
        {
            "pattern_id": p.pattern_id,
            "provider_npi": p.provider_npi,
            "provider_name": names[p.provider_npi].name if p.provider_npi in names else p.provider_name,
            "root_cause": p.root_cause,
            "root_cause_label": root_cause_label(p.root_cause),
            "clinician_facing": _clinician_facing(codebook, p.root_cause),
            "procedure_code": p.procedure_code,
            "department": p.department,
            "status": p.status,
            "episode": p.episode,
            "case_count": p.case_count,
            "post_feedback_cases": p.post_feedback_cases,
            "amount_at_risk": f"{p.amount_at_risk:.2f}",
            "acknowledged": p.acknowledged_at is not None,
            "opened_at": _iso(p.opened_at),
            "feedback_date": p.opened_at.date().isoformat() if p.opened_at else None,
            "resolved_at": _iso(p.resolved_at),
            "dormant_at": _iso(p.dormant_at),
            "disputes": p.disputes,
            "under_review": p.disputed_at is not None,
            "review_outcome": p.review_outcome,
            "alerts_no_change": p.alerts_no_change,
        }
        for p in pattern_rows
    ]
    # What matters first: patterns holding money at risk, the most dollars, then the most cases.
    patterns.sort(
        key=lambda p: (p["status"] != AT_RISK, -Decimal(p["amount_at_risk"]), -p["case_count"], p["pattern_id"])
    )
    listed = patterns
    # A withdrawn pattern is listed (its history stays visible) but counts in no figure: the review found the
    # feedback wrong, so neither its cases nor its "effect" say anything about the loop. Undercoding is revenue
    # left unbilled, found in notes: reported apart, never mixed into denial figures.
    withdrawn = [p for p in listed if p["status"] == "withdrawn"]
    undercoded = [p for p in listed if p["root_cause"] == UNDERCODED and p["status"] != "withdrawn"]
    patterns = [p for p in listed if p["status"] != "withdrawn" and p["root_cause"] != UNDERCODED]
    by_id = {p["pattern_id"]: p for p in patterns}
    # Escalations about undercoding were sent like any other: listed; a withdrawn pattern's are not.
    withdrawn_ids = {p["pattern_id"] for p in withdrawn}
    escalation_rows = [e for e in escalation_rows if e.pattern_id not in withdrawn_ids]

    escalated = by_id | {p["pattern_id"]: p for p in undercoded}
    escalations = _escalations(escalation_rows, escalation_messages, escalated, open_pairs, clock, scope)

    case_days: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for pattern_id, service_date, count in case_day_rows:
        case_days[pattern_id].append((service_date, count))
    note_days: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for provider_npi, service_date, count in note_day_rows:
        note_days[provider_npi].append((service_date, count))
    cases_by_pattern = {pattern_id: DailyCounts(days) for pattern_id, days in case_days.items()}
    notes_by_provider = {npi: DailyCounts(days) for npi, days in note_days.items()}

    at_risk = [p for p in patterns if p["status"] == AT_RISK]
    lines: dict[tuple[str, int, str], list[Decimal]] = defaultdict(list)
    for claim_id, line_number, root_cause, amount in relined_rows:  # of open patterns in scope only (the query)
        lines[(claim_id, line_number, root_cause)].append(amount)
    twice = [amounts for amounts in lines.values() if len(amounts) > 1]
    effect = _effect(patterns, cases_by_pattern, notes_by_provider, clock.date() if clock else None)
    by_week = _at_risk_by_week(patterns, denial_rows, clock)
    return {
        "clock": _iso(clock),
        "scope": _scope(scope, names),
        "data_range": data_range,
        "totals": {
            "patterns": len(listed),  # every row of `patterns`; the figures below leave withdrawn ones out
            "open": len(at_risk),
            "resolved": sum(1 for p in patterns if p["status"] == "resolved"),
            # Quiet without visits to judge by: listed apart, never counted as resolved.
            "dormant": sum(1 for p in patterns if p["status"] == "dormant"),
            "acknowledged": sum(1 for p in patterns if p["acknowledged"]),
            "by_status": dict(Counter(p["status"] for p in patterns).most_common()),
            "amount_at_risk_open": _money(Decimal(p["amount_at_risk"]) for p in at_risk),
            "cases_open": sum(p["case_count"] for p in at_risk),
            # Lines denied under more than one provider, open in each: in each one's amount, so in the total again.
            "lines_of_two_providers": len(twice),
            "amount_of_two_providers": _money(sum(amounts) - max(amounts) for amounts in twice),
            "escalations": len(escalations),
            "escalations_open": sum(1 for e in escalations if e["open"]),
            "escalations_by_reason": dict(sorted(Counter(e["reason"] for e in escalations).items())),
            "withdrawn": len(withdrawn),
            "disputes": sum(p["disputes"] for p in listed),
            "under_review": sum(1 for p in listed if p["under_review"]),
            "disputes_upheld": sum(1 for p in listed if p["review_outcome"] == "upheld"),
            "alerts_no_change": sum(p["alerts_no_change"] for p in listed),
        },
        "at_risk_trend": _trend(by_week),
        "at_risk_by_week": by_week,
        "escalations_open_by_owner": _open_by_owner(escalations),
        "by_provider": _by_provider(patterns, escalations, names),
        "by_department": _group(patterns, escalations, "department"),
        "by_root_cause": _group(patterns, escalations, "root_cause"),
        "loop": {
            "by_department": _loop_by(effect["patterns"], by_id, "department"),
            "by_root_cause": _loop_by(effect["patterns"], by_id, "root_cause"),
        },
        "patterns": listed,
        "escalations": escalations,
        "open_by_root_cause": _open_by(at_risk, "root_cause"),
        "open_by_department": _open_by(at_risk, "department"),
        "weekly_cases": [
            {
                "pattern_id": p["pattern_id"],
                "feedback_date": p["feedback_date"],
                "weeks": _weekly((day, n) for day, n in case_days.get(p["pattern_id"], [])),
            }
            for p in patterns
        ],
        "weekly_notes": {npi: _weekly(days) for npi, days in sorted(note_days.items())},
        "escalations_by_week": _escalations_by_week(escalations),
        # Descriptive, per pattern (each pattern against its provider's notes): not an estimate of the effect.
        "effect": effect,
        # The estimate: difference-in-differences against providers never told, clinical apart (engine/effect.py).
        "effect_estimate": _effect_estimate(
            codebook,
            effect_pattern_rows,
            effect_case_rows,
            note_code_rows,
            clock.date() if clock else None,
            denial_lag_days,
        ),
        "undercoding": {
            "definition": UNDERCODING_DEFINITION,
            "patterns": len(undercoded),
            "open": sum(1 for p in undercoded if p["status"] == "open"),
            "cases": sum(p["case_count"] for p in undercoded),
            "unbilled_estimate": _money(
                [*(Decimal(p["amount_at_risk"]) for p in undercoded), *(top - total for total, top in co_signed)]
            ),
            "co_signed_visits": len(co_signed),  # in two authors' patterns, once in the estimate
            "by_pattern": [
                {k: p[k] for k in ("pattern_id", "provider_npi", "procedure_code", "status", "case_count")}
                | {"unbilled_estimate": p["amount_at_risk"]}
                for p in undercoded
            ],
        },
        "volume": _volume(volume_counts, scope),
    }


def _clinician_facing(codebook: CodeBook, root_cause: str) -> bool:
    try:
        return codebook.is_clinician_facing(RootCause(root_cause))
    except ValueError:  # a root cause this version does not know: not one clinicians were told about
        return False


def _data_range(case_range: Any, note_range: Any) -> dict[str, str | None]:
    """What the store has seen: the first and last denial or signed note, and the visits' service dates."""

    def pick(chooser: Callable[..., Any], *values: Any) -> Any:
        present = [v for v in values if v is not None]
        return chooser(present) if present else None

    first_event = pick(min, case_range[0], note_range[0])
    last_event = pick(max, case_range[1], note_range[1])
    first_visit = pick(min, case_range[2], note_range[2])
    last_visit = pick(max, case_range[3], note_range[3])
    return {
        "first_event_at": _iso(first_event),
        "last_event_at": _iso(last_event),
        "first_service_date": first_visit.isoformat() if first_visit else None,
        "last_service_date": last_visit.isoformat() if last_visit else None,
    }


def _scope(scope: Scope, names: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"provider_npi": scope.provider, "department": scope.department}
    if scope.provider is not None:
        known = names.get(scope.provider)
        result["provider_name"] = known.name if known else None
        result["provider_department"] = known.department if known else None
    return result


def _escalations(
    rows: Sequence[Any],
    messages: dict[str, dict[str, Any]],
    patterns: dict[str, dict[str, Any]],
    open_pairs: dict[tuple[str, str], set[str]],
    clock: datetime | None,
    scope: Scope,
) -> list[dict[str, Any]]:
    result = []
    for e in rows:
        message = messages.get(e.escalation_id, {})
        target = message.get("target") or {}
        pattern = patterns.get(e.pattern_id) if e.pattern_id else None
        if e.pattern_id is not None:
            fallback = [pattern["provider_npi"]] if pattern else []
        elif e.providers:  # systemic: the providers it named, as stored with it
            fallback = e.providers.split(",")
        else:  # (a store from before escalations kept them): those with open patterns of the pair now
            fallback = sorted(open_pairs.get((e.department, e.root_cause), ()))
        providers = list((message.get("facts") or {}).get("providers") or fallback)
        if scope.department is not None and e.department != scope.department:
            continue
        if scope.provider is not None and scope.provider not in providers:
            continue
        if e.pattern_id is not None and pattern is None and not scope.everything:
            continue  # the pattern is outside the scope
        # Open while what it is about is open: its pattern, or (systemic) any open pattern of its department and cause.
        if e.pattern_id is not None:
            is_open = pattern is not None and pattern["status"] == AT_RISK
            closed_at = pattern["resolved_at"] if pattern and not is_open else None
        else:
            is_open = (e.department, e.root_cause) in open_pairs
            closed_at = None
        # The role the message went to; once retention has removed the message, the same role from the routing
        # data (the root cause's owner team, at this level).
        team = target.get("team") or _owner_team(e.root_cause)
        owner = target.get("role") or _owner_role(e.root_cause, e.level)
        until = datetime.fromisoformat(closed_at) if closed_at else clock
        result.append(
            {
                "escalation_id": e.escalation_id,
                "level": e.level,
                "reason": e.reason,
                "owner": owner,
                "owner_team": team,
                "department": e.department,
                "root_cause": e.root_cause,
                "pattern_id": e.pattern_id,
                "providers": providers,
                "created_at": _iso(e.created_at),
                "open": is_open,
                "closed_at": closed_at,
                "age_days": _days(until, e.created_at) if until else None,
                "summary": e.summary,
            }
        )
    return result


def _owner_team(root_cause: str) -> str | None:
    try:
        return routing().team_of(RootCause(root_cause)).name
    except (ValueError, KeyError):
        return None


def _owner_role(root_cause: str, level: int) -> str | None:
    team = _owner_team(root_cause)
    if team is None:
        return None
    chosen = routing().teams[team]
    return chosen.level_1 if level == 1 else chosen.level_2


def _open_by_owner(escalations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in escalations:
        if e["open"]:
            groups[e["owner"] or "unassigned"].append(e)
    rows = [
        {
            "owner": owner,
            "open": len(members),
            "oldest_age_days": max((e["age_days"] or 0) for e in members),
            "by_reason": dict(Counter(e["reason"] for e in members).most_common()),
        }
        for owner, members in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r["open"], r["owner"]))


def _summed(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    at_risk = [p for p in members if p["status"] == AT_RISK]
    return {
        "patterns": len(members),
        "open_patterns": len(at_risk),
        "cases": sum(p["case_count"] for p in at_risk),
        "amount_at_risk": _money(Decimal(p["amount_at_risk"]) for p in at_risk),
    }


def _by_provider(
    patterns: Sequence[dict[str, Any]], escalations: Sequence[dict[str, Any]], names: dict[str, Any]
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in patterns:
        groups[p["provider_npi"]].append(p)
    open_escalations: Counter[str] = Counter(npi for e in escalations if e["open"] for npi in e["providers"])
    rows = []
    for npi, members in groups.items():
        known = names.get(npi)
        rows.append(
            {
                "provider_npi": npi,
                "provider_name": known.name if known else None,
                # The department the provider last worked in; else the one of their largest pattern.
                "department": known.department if known else members[0]["department"],
                **_summed(members),
                "escalations_open": open_escalations[npi],
            }
        )
    return sorted(rows, key=lambda r: (*_by_money()(r), r["provider_npi"]))


def _group(
    patterns: Sequence[dict[str, Any]], escalations: Sequence[dict[str, Any]], field: str
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in patterns:
        groups[p[field]].append(p)
    open_escalations = Counter(e[field] for e in escalations if e["open"])
    rows = []
    for name, members in groups.items():
        row: dict[str, Any] = {field: name}
        if field == "root_cause":
            row["label"] = root_cause_label(name)
            row["clinician_facing"] = members[0]["clinician_facing"]
        row.update(_summed(members))
        row["providers_open"] = len({p["provider_npi"] for p in members if p["status"] == AT_RISK})
        row["escalations_open"] = open_escalations[name]
        rows.append(row)
    return sorted(rows, key=lambda r: (*_by_money()(r), r[field]))


def _open_by(open_patterns: Sequence[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Open patterns and their amount at risk per value of `field`, the largest count first."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in open_patterns:
        groups[p[field]].append(p)
    rows = [
        {field: name, "patterns": len(members), "amount_at_risk": _money(Decimal(p["amount_at_risk"]) for p in members)}
        for name, members in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r["patterns"], -Decimal(r["amount_at_risk"]), r[field]))


def _at_risk_by_week(
    patterns: Sequence[dict[str, Any]], denial_rows: Sequence[Any], clock: datetime | None
) -> list[dict[str, Any]]:
    if clock is None:
        return []
    denials: dict[str, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for pattern_id, denied_at, amount in denial_rows:
        denials[pattern_id].append((denied_at, amount))
    spans = []
    for p in patterns:
        if p["opened_at"] is None:
            continue
        ends = datetime.fromisoformat(p["resolved_at"]) if p["resolved_at"] else None
        if ends is None and p["status"] != AT_RISK:
            continue  # not open now, and no date says when it stopped being open: leave it out
        pairs = sorted(denials.get(p["pattern_id"], []))
        times = [moment for moment, _ in pairs]
        running = [Decimal("0"), *accumulate(amount for _, amount in pairs)]
        spans.append((datetime.fromisoformat(p["opened_at"]), ends, times, running))
    if not spans:
        return []
    rows = []
    for week in _weeks(min(opened for opened, *_ in spans).date(), clock.date()):
        end = min(datetime.combine(week + timedelta(days=7), time(), tzinfo=clock.tzinfo), clock)
        amount, count = Decimal("0"), 0
        for opened, ends, times, running in spans:
            if opened <= end and (ends is None or ends > end):
                count += 1
                amount += running[bisect_right(times, end)]
        rows.append(
            {"week": week.isoformat(), "as_of": _iso(end), "open_patterns": count, "amount_at_risk": f"{amount:.2f}"}
        )
    return rows


def _trend(by_week: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dollars at risk now against TREND_WEEKS weeks earlier (or the earliest week there is)."""
    if not by_week:
        return {"weeks": 0, "from_week": None, "from_amount": None, "to_amount": None, "change": None}
    earlier = by_week[max(len(by_week) - 1 - TREND_WEEKS, 0)]
    now = by_week[-1]
    return {
        "weeks": len(by_week) - 1 - by_week.index(earlier),
        "from_week": earlier["week"],
        "from_amount": earlier["amount_at_risk"],
        "to_amount": now["amount_at_risk"],
        "change": f"{Decimal(now['amount_at_risk']) - Decimal(earlier['amount_at_risk']):.2f}",
    }


def _escalations_by_week(escalations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every week from the first escalation to the last (quiet weeks included, so a chart has no gaps)."""
    by_week: dict[date, Counter[str]] = defaultdict(Counter)
    for e in escalations:
        by_week[week_start(datetime.fromisoformat(e["created_at"]).date())][e["reason"]] += 1
    if not by_week:
        return []
    return [
        {
            "week": week.isoformat(),
            "total": sum(by_week[week].values()),
            "by_reason": dict(sorted(by_week[week].items())),
        }
        for week in _weeks(min(by_week), max(by_week))
    ]


SPAN_KEYS = ("before_cases", "before_notes", "after_cases", "after_notes")


def _rates(sums: dict[str, Any]) -> dict[str, Any]:
    return {
        **sums,
        "before_per_100_notes": _per_100(sums["before_cases"], sums["before_notes"]),
        "after_per_100_notes": _per_100(sums["after_cases"], sums["after_notes"]),
    }


def _effect(
    patterns: Sequence[dict[str, Any]],
    cases_by_pattern: dict[str, DailyCounts],
    notes_by_provider: dict[str, DailyCounts],
    today: date | None,
) -> dict[str, Any]:
    rows = []
    for p in patterns:
        if p["feedback_date"] is None or today is None:
            continue
        feedback = date.fromisoformat(p["feedback_date"])
        cases = cases_by_pattern.get(p["pattern_id"], DailyCounts())
        notes = notes_by_provider.get(p["provider_npi"], DailyCounts())
        first = cases.first_day or feedback
        until = datetime.fromisoformat(p["resolved_at"]).date() if p["resolved_at"] else today
        before_end, after_start = feedback - timedelta(days=1), feedback + timedelta(days=1)
        row: dict[str, Any] = {
            "pattern_id": p["pattern_id"],
            "clinician_facing": p["clinician_facing"],
            "feedback_date": p["feedback_date"],
            "before_from": first.isoformat(),
            "before_cases": cases.between(first, before_end),
            "before_notes": notes.between(first, before_end),
            "after_until": until.isoformat(),
            "after_cases": cases.between(after_start, until),
            "after_notes": notes.between(after_start, until),
        }
        rows.append(_rates(row))
    compared = [r for r in rows if _compared(r)]
    overall = _rates({"patterns_compared": len(compared), **{k: sum(r[k] for r in compared) for k in SPAN_KEYS}})
    return {"definition": EFFECT_DEFINITION, "overall": overall, "patterns": rows}


def _compared(row: dict[str, Any]) -> bool:
    return bool(row["clinician_facing"] and row["before_notes"] and row["after_notes"])


def verdict(before: float | None, after: float | None) -> str:
    """works: fewer denials per 100 notes after feedback; does_not_work: as many or more; no_data: no notes."""
    if before is None or after is None:
        return "no_data"
    return "works" if after < before else "does_not_work"


def _loop_by(rows: Sequence[dict[str, Any]], patterns: dict[str, dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Where the loop works: per department (or root cause), clinician-facing patterns with notes in both spans."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["clinician_facing"]:
            groups[patterns[r["pattern_id"]][field]].append(r)
    result = []
    for name, members in groups.items():
        compared = [r for r in members if _compared(r)]
        sums = _rates({k: sum(r[k] for r in compared) for k in SPAN_KEYS})
        entry: dict[str, Any] = {field: name}
        if field == "root_cause":
            entry["label"] = root_cause_label(name)
        entry.update(
            {
                "patterns_with_feedback": len(members),
                "patterns_compared": len(compared),
                "patterns_without_notes_after": sum(1 for r in members if not r["after_notes"]),
                **sums,
                "verdict": verdict(sums["before_per_100_notes"], sums["after_per_100_notes"]),
            }
        )
        result.append(entry)
    order = {"works": 0, "does_not_work": 1, "no_data": 2}
    return sorted(result, key=lambda r: (order[r["verdict"]], -r["after_notes"], r[field]))


# ---- renderings --------------------------------------------------------------------------------------------


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


CSV_COLUMNS = (
    "pattern_id",
    "status",
    "provider_npi",
    "provider_name",
    "department",
    "root_cause",
    "root_cause_label",
    "clinician_facing",
    "procedure_code",
    "episode",
    "case_count",
    "post_feedback_cases",
    "amount_at_risk",
    "acknowledged",
    "opened_at",
    "feedback_date",
    "resolved_at",
    "escalations",
    "escalations_open",
    "before_cases",
    "before_notes",
    "before_per_100_notes",
    "after_cases",
    "after_notes",
    "after_per_100_notes",
)


def render_csv(report: dict[str, Any]) -> str:
    """Every pattern of the scope, one row each, in the report's order (dollars at risk, then cases)."""
    effect = {r["pattern_id"]: r for r in report["effect"]["patterns"]}
    escalated: Counter[str] = Counter()
    escalated_open: Counter[str] = Counter()
    for e in report["escalations"]:
        if e["pattern_id"]:
            escalated[e["pattern_id"]] += 1
            escalated_open[e["pattern_id"]] += e["open"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in report["patterns"]:
        row = {**effect.get(p["pattern_id"], {}), **p}
        row["escalations"] = escalated[p["pattern_id"]]
        row["escalations_open"] = escalated_open[p["pattern_id"]]
        writer.writerow(["" if row.get(c) is None else _csv_value(row[c]) for c in CSV_COLUMNS])
    return out.getvalue().rstrip("\n")


def _csv_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def format_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1f}"


def dollars(amount: str | Decimal) -> str:
    return f"${Decimal(amount):,.2f}"


def signed_dollars(amount: str) -> str:
    value = Decimal(amount)
    return f"{'+' if value > 0 else '-' if value < 0 else '±'}${abs(value):,.2f}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def provider_title(npi: str, name: str | None) -> str:
    return f"{name} (NPI {npi})" if name else f"NPI {npi}"


def scope_title(report: dict[str, Any]) -> str:
    scope = report["scope"]
    if scope["provider_npi"]:
        title = provider_title(scope["provider_npi"], scope.get("provider_name"))
        return f"{title}, {scope['provider_department']}" if scope.get("provider_department") else title
    if scope["department"]:
        return f"{scope['department']} department"
    return "all departments"


def date_range_text(report: dict[str, Any]) -> str:
    r = report["data_range"]
    if not r["first_event_at"]:
        return "no events yet"
    return (
        f"events {r['first_event_at'][:10]} to {r['last_event_at'][:10]}, "
        f"visits {r['first_service_date']} to {r['last_service_date']}"
    )


def escalation_text(report: dict[str, Any]) -> str:
    """'3 open: 2 to Department lead (oldest 40 days), 1 to Revenue-cycle leadership (oldest 9 days)'."""
    owners = report["escalations_open_by_owner"]
    if not owners:
        return "none open"
    parts = [
        f"{o['open']:,} to {owner_label(o['owner'])} (oldest {plural(o['oldest_age_days'], 'day')})" for o in owners
    ]
    return f"{report['totals']['escalations_open']:,} open: " + ", ".join(parts)


def loop_lines(report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Departments where the loop works and where it does not, as short phrases."""

    def phrase(r: dict[str, Any]) -> str:
        return (
            f"{r['department']} ({format_rate(r['before_per_100_notes'])} -> {format_rate(r['after_per_100_notes'])} "
            f"denials per 100 notes, {plural(r['patterns_compared'], 'pattern')})"
        )

    rows = report["loop"]["by_department"]
    return (
        [phrase(r) for r in rows if r["verdict"] == "works"],
        [phrase(r) for r in rows if r["verdict"] == "does_not_work"],
    )


def trend_text(report: dict[str, Any]) -> str:
    trend = report["at_risk_trend"]
    if not trend["weeks"]:
        return ""
    return f"{signed_dollars(trend['change'])} over {plural(trend['weeks'], 'week')}"


def render_text(report: dict[str, Any], limit: int | None = DEFAULT_LIMIT) -> str:
    """The report as readable lines; `limit` rows per table (None or 0: all)."""

    def top(rows: Sequence[Any]) -> Sequence[Any]:
        return rows[:limit] if limit else rows

    totals = report["totals"]
    statuses = ", ".join(f"{n:,} {s}" for s, n in totals["by_status"].items()) or "none"
    works, fails = loop_lines(report)
    trend = trend_text(report)
    lines = [
        f"Docloop report: {scope_title(report)} (clock {report['clock'] or 'not started'})",
        f"Data: {date_range_text(report)}",
        f"Patterns: {totals['patterns']} ({totals['open']} open, {totals['resolved']} resolved, "
        f"{totals['dormant']} dormant (no visits to judge by), {totals['withdrawn']} withdrawn, "
        f"{totals['acknowledged']} acknowledged); open amount at risk {dollars(totals['amount_at_risk_open'])}",
        f"Disputes: {totals['disputes']} ({totals['under_review']} under review, {totals['disputes_upheld']} upheld, "
        f"{totals['withdrawn']} withdrawn); pre-bill alerts answered 'no change needed': {totals['alerts_no_change']}",
        f"  by status: {statuses}",
        f"Dollars at risk: {dollars(totals['amount_at_risk_open'])} in {plural(totals['open'], 'open pattern')}"
        + two_providers_note(totals)
        + (f", {trend}" if trend else ""),
        f"Escalations: {totals['escalations']} raised; {escalation_text(report)}",
        "Where the loop works: " + ("; ".join(works) or "nowhere measurable yet"),
        "Where it does not: " + ("; ".join(fails) or "nowhere measurable yet"),
    ]

    def section(
        title: str, rows: Sequence[Any], header: tuple[str, ...], cells: Callable[[Any], tuple[str, ...]]
    ) -> None:
        shown = top(rows)
        lines.extend(["", title + (f" (top {len(shown)} of {len(rows)})" if len(shown) < len(rows) else "")])
        lines.extend(_table(header, [cells(r) for r in shown]) if rows else ["  (none)"])

    section(
        "Providers by dollars at risk",
        report["by_provider"],
        ("provider", "npi", "department", "open", "cases", "at risk", "escalated"),
        lambda r: (
            r["provider_name"] or "-",
            r["provider_npi"],
            r["department"],
            str(r["open_patterns"]),
            str(r["cases"]),
            dollars(r["amount_at_risk"]),
            str(r["escalations_open"]),
        ),
    )
    section(
        "Departments by dollars at risk",
        report["by_department"],
        ("department", "providers", "open", "cases", "at risk", "escalated"),
        lambda r: (
            r["department"],
            str(r["providers_open"]),
            str(r["open_patterns"]),
            str(r["cases"]),
            dollars(r["amount_at_risk"]),
            str(r["escalations_open"]),
        ),
    )
    section(
        "Root causes by dollars at risk",
        report["by_root_cause"],
        ("root cause", "open", "cases", "at risk"),
        lambda r: (r["label"], str(r["open_patterns"]), str(r["cases"]), dollars(r["amount_at_risk"])),
    )
    section(
        "Escalations, open first, oldest first",
        escalation_order(report["escalations"]),
        ("status", "owner", "reason", "department", "provider(s)", "age", "raised"),
        lambda e: (
            "open" if e["open"] else "closed",
            owner_label(e["owner"] or "-"),
            reason_label(e["reason"]),
            e["department"],
            ", ".join(e["providers"]) or "-",
            "-" if e["age_days"] is None else f"{e['age_days']} d",
            e["created_at"][:10],
        ),
    )
    section(
        "Patterns by dollars at risk, then cases",
        report["patterns"],
        ("status", "department", "root cause", "provider", "code", "cases", "after fb", "at risk", "ack"),
        lambda p: (
            p["status"],
            p["department"],
            p["root_cause_label"],
            provider_title(p["provider_npi"], p["provider_name"]),
            p["procedure_code"],
            str(p["case_count"]),
            str(p["post_feedback_cases"]),
            dollars(p["amount_at_risk"]),
            "yes" if p["acknowledged"] else "no",
        ),
    )
    effect = report["effect"]
    if effect["patterns"]:
        overall = effect["overall"]
        lines += [
            "",
            "Loop effect (denial cases per 100 signed notes of the provider, before -> after feedback):",
            f"  overall {format_rate(overall['before_per_100_notes'])} -> {format_rate(overall['after_per_100_notes'])}"
            f" ({overall['before_cases']} cases / {overall['before_notes']} notes before, "
            f"{overall['after_cases']} cases / {overall['after_notes']} notes after)",
        ]
    estimate = report.get("effect_estimate")
    if estimate:
        lines += ["", "Effect of feedback (difference-in-differences, cases per 100 notes, vs providers not told):"]
        for group in ("clinical", "administrative"):
            e = estimate[group]
            figure = (
                f"{e['estimate_per_100_notes']:+.2f} (95% interval {e['interval_95'][0]:+.2f} to "
                f"{e['interval_95'][1]:+.2f}): {e['verdict']}"
                if e["estimate_per_100_notes"] is not None
                else e["verdict"]
            )
            lines.append(
                f"  {group}{' (headline)' if group == estimate['headline'] else ''}: {figure}; "
                f"{e['patterns']} patterns, {e['providers']} providers, "
                f"{e['notes']['treated_before'] + e['notes']['treated_after']} notes"
            )
    under = report.get("undercoding")
    if under and under["patterns"]:
        lines.append(
            f"Undercoding (apart from denials): {under['patterns']} patterns, {under['cases']} notes, "
            f"{dollars(under['unbilled_estimate'])} estimated left unbilled{co_signed_note(under)}"
        )
    if any(a["received"] or a["grouped"] or a["inhibited"] or a["silenced"] for a in report["volume"]):
        lines += ["", "Messages per recipient (what people received; grouped into digests, inhibited, silenced):"]
        lines += _table(
            ("audience", "recipients", "received", "digests", "per day p50/p90/max", "per week p50/p90/max")
            + ("grouped", "inhibited", "silenced", "rate limited"),
            [
                (
                    a["audience"],
                    str(a["recipients"]),
                    str(a["received"]),
                    str(a["digests"]),
                    "/".join(str(a["per_day"][k]) for k in ("p50", "p90", "max")),
                    "/".join(str(a["per_week"][k]) for k in ("p50", "p90", "max")),
                    str(a["grouped"]),
                    str(a["inhibited"]),
                    str(a["silenced"]),
                    str(a["rate_limited"]),
                )
                for a in report["volume"]
            ],
        )
    if limit and any(len(report[k]) > limit for k in ("patterns", "escalations", "by_provider")):
        lines += ["", "Every row: docloop report --format csv (patterns) or --format json (everything)."]
    return "\n".join(lines)


def _effect_estimate(
    codebook: CodeBook,
    pattern_rows: Sequence[Any],
    case_rows: Sequence[Any],
    note_rows: Sequence[Any],
    clock: date | None,
    denial_lag_days: int,
) -> dict[str, Any]:
    facts = [
        PatternFacts(
            p.provider_npi,
            p.root_cause,
            p.procedure_code,
            p.opened_at.date(),
            codebook.is_clinician_facing(RootCause(p.root_cause)),
        )
        for p in pattern_rows
        if p.opened_at is not None
    ]
    cases: dict[tuple[str, str, str], list[tuple[date, int]]] = defaultdict(list)
    for provider, root_cause, code, day, count in case_rows:
        cases[(provider, root_cause, code)].append((day, count))
    per_day: Counter[tuple[str, str, date]] = Counter()
    for provider, day, codes in note_rows:
        for code in set(codes):
            per_day[(provider, code, day)] += 1
    notes: dict[tuple[str, str], list[tuple[date, int]]] = defaultdict(list)
    for (provider, code, day), count in sorted(per_day.items()):
        notes[(provider, code)].append((day, count))
    return estimate_effect(facts, cases, notes, clock, denial_lag_days)


def _volume(found: Counter[Count], scope: Scope) -> list[dict[str, Any]]:
    """Messages per recipient by audience (engine/volume.py), from the routing stage's daily counts. A
    provider's page counts only what that clinician received; a department's, the whole organisation's."""
    if scope.provider is not None:
        mine = f"provider:{scope.provider}"
        found = Counter({key: count for key, count in found.items() if key[1] == mine})
    return [asdict(a) for a in summarize(found).audiences]


def escalation_order(escalations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open before closed, then the highest level, then the oldest."""
    return sorted(escalations, key=lambda e: (not e["open"], -e["level"], -(e["age_days"] or 0), e["escalation_id"]))


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  " + "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    return [fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)]
