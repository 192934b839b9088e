"""`docloop report`: what the loop knows now: patterns, escalations and totals."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.store import tables as t


async def build_report(database: AsyncEngine) -> dict[str, Any]:
    """The report as plain data (JSON-ready); text and HTML renderings read only this."""
    async with database.connect() as conn:
        clock_row = (await conn.execute(select(t.engine_state.c.clock))).first()
        pattern_rows = (
            await conn.execute(
                select(t.patterns)
                .where(t.patterns.c.status != "pending")
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
            "resolved_at": _iso(p.resolved_at),
        }
        for p in pattern_rows
    ]
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
    ]
    open_patterns = [p for p in patterns if p["status"] == "open"]
    return {
        "clock": _iso(clock_row.clock) if clock_row else None,
        "totals": {
            "patterns": len(patterns),
            "open": len(open_patterns),
            "resolved": sum(1 for p in patterns if p["status"] == "resolved"),
            "acknowledged": sum(1 for p in patterns if p["acknowledged"]),
            "amount_at_risk_open": f"{sum((Decimal(p['amount_at_risk']) for p in open_patterns), Decimal('0')):.2f}",
            "escalations": len(escalations),
            "escalations_by_reason": dict(sorted(Counter(e["reason"] for e in escalations).items())),
        },
        "patterns": patterns,
        "escalations": escalations,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


def render_text(report: dict[str, Any]) -> str:
    totals = report["totals"]
    lines = [
        f"Docloop report (clock {report['clock'] or 'not started'})",
        f"Patterns: {totals['patterns']} ({totals['open']} open, {totals['resolved']} resolved, "
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
        for p in report["patterns"]
    ]
    lines += _table(header, rows) if rows else ["(no patterns yet)"]
    lines += ["", f"Escalations: {totals['escalations']} {totals['escalations_by_reason'] or ''}".rstrip()]
    for e in report["escalations"]:
        lines.append(f"  L{e['level']} {e['reason']:<26} {e['created_at']}  {e['summary']}")
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    return [fmt(header), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in rows)]
