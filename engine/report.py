"""`docloop report`: what the loop knows now: patterns, escalations, totals, and whether feedback worked."""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.codebook import CodeBook
from engine.effect import PatternFacts, estimate_effect
from engine.store import tables as t
from schemas import RootCause

EFFECT_DEFINITION = (
    "Denial cases per 100 signed notes of the pattern's provider. Before: the pattern's cases with a service date "
    "from its first case up to the day before the feedback date, per 100 of the provider's notes with a service "
    "date in the same span. After: the cases with a service date after the feedback date, per 100 of the "
    "provider's notes with a service date after the feedback date, up to the report clock (for a resolved pattern, "
    "up to its resolution date: later cases belong to a new episode). The feedback date itself is in neither span. "
    "No notes in a span: n/a. Overall: the sums of cases and of notes over the patterns that have notes in both "
    "spans, so that before and after compare the same patterns."
)


UNDERCODED = "em_level_undercoded"
UNDERCODING_DEFINITION = (
    "Signed notes whose documented MDM or total time supports a higher office E/M level than the code on the note, "
    "grouped into patterns like denials (no denial needed). unbilled_estimate: the sum over those visits of the rate "
    "of the supported code minus the rate of the code selected (engine/domain/data/em_rates.json, rough figures, "
    "not a fee schedule). Not included in any denial figure (amounts at risk, open patterns, effect)."
)


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


async def build_report(database: AsyncEngine, denial_lag_days: int | None = None) -> dict[str, Any]:
    """The report as plain data (JSON-ready); text and HTML renderings read only this."""
    if denial_lag_days is None:
        from engine.settings import Settings  # the configured lag, unless the caller says

        denial_lag_days = Settings().denial_lag_days
    reported = t.patterns.c.status != "pending"
    async with database.connect() as conn:
        # The latest event time any task has seen (each task has its own clock).
        clock_row = (await conn.execute(select(func.max(t.tasks.c.clock).label("clock")))).first()
        pattern_rows = (
            await conn.execute(
                select(t.patterns)
                .where(reported)
                .order_by(
                    t.patterns.c.department,
                    t.patterns.c.root_cause,
                    t.patterns.c.provider_npi,
                    t.patterns.c.procedure_code,
                    t.patterns.c.episode,
                )
            )
        ).all()
        escalation_rows = (
            await conn.execute(
                select(t.escalations).order_by(t.escalations.c.created_at, t.escalations.c.escalation_id)
            )
        ).all()
        # Two GROUP BY queries feed every chart: cases per (pattern, service day) and notes per (provider, service
        # day). Both are bounded by days, not by events, so the report stays cheap on a large store.
        case_day_rows = (
            await conn.execute(
                select(t.cases.c.pattern_id, t.cases.c.service_date, func.count())
                .where(t.cases.c.pattern_id.in_(select(t.patterns.c.pattern_id).where(reported)))
                .group_by(t.cases.c.pattern_id, t.cases.c.service_date)
            )
        ).all()
        note_day_rows = (
            await conn.execute(
                select(t.notes.c.provider_npi, t.notes.c.service_date, func.count())
                .where(t.notes.c.provider_npi.in_(select(t.patterns.c.provider_npi).where(reported)))
                .group_by(t.notes.c.provider_npi, t.notes.c.service_date)
            )
        ).all()
        # The effect figure counts each case once by its key and each note once per (provider, procedure).
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
    clock = clock_row.clock if clock_row else None
    patterns = [
        {
            "pattern_id": p.pattern_id,
            "provider_npi": p.provider_npi,
            "root_cause": p.root_cause,
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
    listed = patterns
    # A withdrawn pattern is listed (its history stays visible) but counts in no figure: the review found the
    # feedback wrong, so neither its cases nor its "effect" say anything about the loop.
    withdrawn = [p for p in listed if p["status"] == "withdrawn"]
    patterns = [p for p in listed if p["status"] != "withdrawn"]
    withdrawn_ids = {p["pattern_id"] for p in withdrawn}
    escalations = [
        {
            "escalation_id": e.escalation_id,
            "level": e.level,
            "reason": e.reason,
            "department": e.department,
            "root_cause": e.root_cause,
            "pattern_id": e.pattern_id,
            "created_at": _iso(e.created_at),
            "summary": e.summary,
        }
        for e in escalation_rows
        if e.pattern_id not in withdrawn_ids
    ]
    case_days: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for pattern_id, service_date, count in case_day_rows:
        case_days[pattern_id].append((service_date, count))
    note_days: dict[str, list[tuple[date, int]]] = defaultdict(list)
    for provider_npi, service_date, count in note_day_rows:
        note_days[provider_npi].append((service_date, count))
    cases_by_pattern = {pattern_id: DailyCounts(days) for pattern_id, days in case_days.items()}
    notes_by_provider = {npi: DailyCounts(days) for npi, days in note_days.items()}

    # Undercoding is revenue left unbilled, found in notes: reported apart, never mixed into denial figures.
    undercoded = [p for p in patterns if p["root_cause"] == UNDERCODED]
    patterns = [p for p in patterns if p["root_cause"] != UNDERCODED]
    open_patterns = [p for p in patterns if p["status"] == "open"]
    return {
        "clock": _iso(clock),
        "totals": {
            "patterns": len(listed),  # every row of `patterns`; the figures below leave withdrawn ones out
            "open": len(open_patterns),
            "resolved": sum(1 for p in patterns if p["status"] == "resolved"),
            # Quiet without visits to judge by: listed apart, never counted as resolved.
            "dormant": sum(1 for p in patterns if p["status"] == "dormant"),
            "acknowledged": sum(1 for p in patterns if p["acknowledged"]),
            "amount_at_risk_open": _money(Decimal(p["amount_at_risk"]) for p in open_patterns),
            "escalations": len(escalations),
            "escalations_by_reason": dict(sorted(Counter(e["reason"] for e in escalations).items())),
            "withdrawn": len(withdrawn),
            "disputes": sum(p["disputes"] for p in listed),
            "under_review": sum(1 for p in listed if p["under_review"]),
            "disputes_upheld": sum(1 for p in listed if p["review_outcome"] == "upheld"),
            "alerts_no_change": sum(p["alerts_no_change"] for p in listed),
        },
        "patterns": listed,
        "escalations": escalations,
        "open_by_root_cause": _open_by(open_patterns, "root_cause"),
        "open_by_department": _open_by(open_patterns, "department"),
        "weekly_cases": [
            {
                "pattern_id": p["pattern_id"],
                "feedback_date": p["feedback_date"],
                "weeks": _weekly((day, n) for day, n in case_days.get(p["pattern_id"], [])),
            }
            for p in patterns
        ],
        "escalations_by_week": _escalations_by_week(escalations),
        "undercoding": {
            "definition": UNDERCODING_DEFINITION,
            "patterns": len(undercoded),
            "open": sum(1 for p in undercoded if p["status"] == "open"),
            "cases": sum(p["case_count"] for p in undercoded),
            "unbilled_estimate": _money(Decimal(p["amount_at_risk"]) for p in undercoded),
            "by_pattern": [
                {k: p[k] for k in ("pattern_id", "provider_npi", "procedure_code", "status", "case_count")}
                | {"unbilled_estimate": p["amount_at_risk"]}
                for p in undercoded
            ],
        },
        # Descriptive, per pattern (each pattern against its provider's notes): not an estimate of the effect.
        "effect_by_pattern": _effect(patterns, cases_by_pattern, notes_by_provider, clock.date() if clock else None),
        "effect": _effect_estimate(
            patterns, effect_case_rows, note_code_rows, clock.date() if clock else None, denial_lag_days
        ),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _money(amounts: Iterable[Decimal]) -> str:
    return f"{sum(amounts, Decimal('0')):.2f}"


def week_start(day: date) -> date:
    """Weeks start on Monday (ISO 8601)."""
    return day - timedelta(days=day.weekday())


def _weekly(day_counts: Iterable[tuple[date, int]]) -> dict[str, int]:
    weeks: Counter[date] = Counter()
    for day, count in day_counts:
        weeks[week_start(day)] += count
    return {week.isoformat(): weeks[week] for week in sorted(weeks)}


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


def _escalations_by_week(escalations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every week from the first escalation to the last (quiet weeks included, so a chart has no gaps)."""
    by_week: dict[date, Counter[str]] = defaultdict(Counter)
    for e in escalations:
        by_week[week_start(datetime.fromisoformat(e["created_at"]).date())][e["reason"]] += 1
    if not by_week:
        return []
    first, last = min(by_week), max(by_week)
    weeks = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    return [
        {
            "week": week.isoformat(),
            "total": sum(by_week[week].values()),
            "by_reason": dict(sorted(by_week[week].items())),
        }
        for week in weeks
    ]


def _per_100(cases: int, notes: int) -> float | None:
    return round(100 * cases / notes, 1) if notes else None


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
            "feedback_date": p["feedback_date"],
            "before_from": first.isoformat(),
            "before_cases": cases.between(first, before_end),
            "before_notes": notes.between(first, before_end),
            "after_until": until.isoformat(),
            "after_cases": cases.between(after_start, until),
            "after_notes": notes.between(after_start, until),
        }
        row["before_per_100_notes"] = _per_100(row["before_cases"], row["before_notes"])
        row["after_per_100_notes"] = _per_100(row["after_cases"], row["after_notes"])
        rows.append(row)
    compared = [r for r in rows if r["before_notes"] and r["after_notes"]]
    keys = ("before_cases", "before_notes", "after_cases", "after_notes")
    overall: dict[str, Any] = {"patterns_compared": len(compared), **{k: sum(r[k] for r in compared) for k in keys}}
    return {
        "definition": EFFECT_DEFINITION,
        "overall": {
            **overall,
            "before_per_100_notes": _per_100(overall["before_cases"], overall["before_notes"]),
            "after_per_100_notes": _per_100(overall["after_cases"], overall["after_notes"]),
        },
        "patterns": rows,
    }


def _effect_estimate(
    patterns: Sequence[dict[str, Any]],
    case_rows: Sequence[Any],
    note_rows: Sequence[Any],
    clock: date | None,
    denial_lag_days: int,
) -> dict[str, Any]:
    codebook = CodeBook.load()
    facts = [
        PatternFacts(
            p["provider_npi"],
            p["root_cause"],
            p["procedure_code"],
            date.fromisoformat(p["feedback_date"]),
            codebook.is_clinician_facing(RootCause(p["root_cause"])),
        )
        for p in patterns
        if p["feedback_date"] is not None
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


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


def format_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1f}"


def render_text(report: dict[str, Any], limit: int | None = None) -> str:
    """The report as text; `limit` keeps the patterns with most at risk and the latest escalations."""
    totals = report["totals"]
    patterns = report["patterns"]
    escalations = report["escalations"]
    if limit is not None:
        patterns = sorted(patterns, key=lambda p: (-Decimal(p["amount_at_risk"]), p["pattern_id"]))[:limit]
        escalations = escalations[-limit:]
    lines = [
        f"Docloop report (clock {report['clock'] or 'not started'})",
        f"Patterns: {totals['patterns']} ({totals['open']} open, {totals['resolved']} resolved, "
        f"{totals['dormant']} dormant (no visits to judge by), "
        f"{totals['acknowledged']} acknowledged); open amount at risk ${Decimal(totals['amount_at_risk_open']):,.2f}",
        "",
    ]
    header = ("status", "department", "root_cause", "npi", "code", "cases", "after_fb", "at_risk", "ack", "pattern_id")
    rows = [
        (
            p["status"],
            p["department"],
            p["root_cause"],
            p["provider_npi"],
            p["procedure_code"],
            str(p["case_count"]),
            str(p["post_feedback_cases"]),
            f"{Decimal(p['amount_at_risk']):,.2f}",
            "yes" if p["acknowledged"] else "no",
            p["pattern_id"],
        )
        for p in patterns
    ]
    lines += _table(header, rows) if rows else ["(no patterns yet)"]
    if len(patterns) < len(report["patterns"]):
        lines.append(f"... the {len(patterns)} with most at risk of {len(report['patterns'])} patterns")
    lines += ["", f"Escalations: {totals['escalations']} {totals['escalations_by_reason'] or ''}".rstrip()]
    if len(escalations) < len(report["escalations"]):
        lines.append(f"  ... the latest {len(escalations)}:")
    for e in escalations:
        lines.append(f"  L{e['level']} {e['reason']:<26} {e['created_at']}  {e['summary']}")
    estimate = report.get("effect")
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
            f"${Decimal(under['unbilled_estimate']):,.2f} estimated left unbilled"
        )
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    return [fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)]
