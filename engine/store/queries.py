"""Read-side queries of the HTTP read API: patterns, one pattern with what it caused, escalations.

Pages are keyset pages (`WHERE key > last key ORDER BY key LIMIT n`): their cost does not grow with the page
number, and a row changing between two requests cannot shift the rows of later pages.

No query here selects `patient_hash` (nor any other patient identifier): what leaves through the API is what
the outbound messages already carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, exists, false, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.domain.model import PatternStatus
from engine.store import tables as t

PATTERN_COLUMNS = [c for c in t.patterns.c if c.name not in ("evidence", "next_due_at", "escalations")]
CASE_COLUMNS = [c for c in t.cases.c if c.name != "patient_hash"]


@dataclass(frozen=True)
class PatternFilter:
    provider_npi: str | None = None
    department: str | None = None
    root_cause: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class EscalationFilter:
    # The (root cause, level) pairs whose escalations go to one owner role (routing.json: a root cause's team
    # names its level-1 and level-2 roles); None: any owner.
    owned: tuple[tuple[str, int], ...] | None = None
    department: str | None = None
    state: str | None = None  # "open" | "closed"
    reason: str | None = None


@dataclass(frozen=True)
class PatternDetail:
    pattern: Row[Any]
    cases: Sequence[Any]  # rows
    notifications: Sequence[Any]
    escalations: Sequence[Any]


async def patterns_page(
    conn: AsyncConnection, where: PatternFilter, limit: int, after: str | None
) -> tuple[list[Row[Any]], bool]:
    """Up to `limit` patterns after the pattern id `after`, in pattern id order, and whether more follow."""
    p = t.patterns.c
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (p.provider_npi, where.provider_npi),
        (p.department, where.department),
        (p.root_cause, where.root_cause),
        (p.status, where.status),
    ):
        if value is not None:
            conditions.append(column == value)
    if after is not None:
        conditions.append(p.pattern_id > after)
    query = select(*PATTERN_COLUMNS).where(*conditions).order_by(p.pattern_id).limit(limit + 1)
    rows = list((await conn.execute(query)).all())
    return rows[:limit], len(rows) > limit


def escalation_is_open() -> ColumnElement[bool]:
    """An escalation is open while its pattern is open; a systemic one (no single pattern) while its department
    still has open patterns of its root cause."""
    e, p = t.escalations.c, t.patterns.c
    open_status = p.status == PatternStatus.OPEN.value
    return or_(
        and_(e.pattern_id.is_not(None), exists().where(p.pattern_id == e.pattern_id, open_status)),
        and_(
            e.pattern_id.is_(None),
            exists().where(p.department == e.department, p.root_cause == e.root_cause, open_status),
        ),
    )


def _escalation_query() -> Any:
    e = t.escalations.c
    provider = select(t.patterns.c.provider_npi).where(t.patterns.c.pattern_id == e.pattern_id).scalar_subquery()
    return (
        select(
            t.escalations,
            provider.label("provider_npi"),
            escalation_is_open().label("is_open"),
            t.outbox.c.value.label("message"),
            t.outbox.c.published_at,
        )
        .select_from(t.escalations)
        .outerjoin(t.outbox, t.outbox.c.message_id == e.escalation_id)
    )


async def escalations_page(
    conn: AsyncConnection, where: EscalationFilter, limit: int, after: tuple[datetime, str] | None
) -> tuple[list[Row[Any]], bool]:
    """Up to `limit` escalations, newest first, after the (created_at, escalation_id) `after`."""
    e = t.escalations.c
    conditions: list[ColumnElement[bool]] = []
    if where.owned is not None:
        pairs = [and_(e.root_cause == root_cause, e.level == level) for root_cause, level in where.owned]
        conditions.append(or_(*pairs) if pairs else false())
    if where.department is not None:
        conditions.append(e.department == where.department)
    if where.reason is not None:
        conditions.append(e.reason == where.reason)
    if where.state == "open":
        conditions.append(escalation_is_open())
    elif where.state == "closed":
        conditions.append(~escalation_is_open())
    if after is not None:
        created, escalation_id = after
        conditions.append(or_(e.created_at < created, and_(e.created_at == created, e.escalation_id < escalation_id)))
    query = _escalation_query().where(*conditions).order_by(e.created_at.desc(), e.escalation_id.desc())
    rows = list((await conn.execute(query.limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def pattern_detail(conn: AsyncConnection, pattern_id: str) -> PatternDetail | None:
    pattern = (await conn.execute(select(*PATTERN_COLUMNS).where(t.patterns.c.pattern_id == pattern_id))).first()
    if pattern is None:
        return None
    cases = (
        await conn.execute(
            select(*CASE_COLUMNS)
            .where(t.cases.c.pattern_id == pattern_id)
            .order_by(t.cases.c.service_date, t.cases.c.case_id)
        )
    ).all()
    n = t.notifications.c
    notifications = (
        await conn.execute(
            select(n.notification_id, t.outbox.c.value.label("message"), t.outbox.c.created_at, t.outbox.c.published_at)
            .select_from(t.notifications)
            .outerjoin(t.outbox, t.outbox.c.message_id == n.notification_id)
            .where(n.pattern_id == pattern_id)
            .order_by(t.outbox.c.seq, n.notification_id)
        )
    ).all()
    e = t.escalations.c
    own_or_systemic = or_(
        e.pattern_id == pattern_id,
        and_(e.pattern_id.is_(None), e.department == pattern.department, e.root_cause == pattern.root_cause),
    )
    escalations = (
        await conn.execute(_escalation_query().where(own_or_systemic).order_by(e.created_at, e.escalation_id))
    ).all()
    return PatternDetail(pattern, cases, notifications, escalations)
