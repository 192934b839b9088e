"""The routing stage's storage: load what a pass needs of RoutingState, run the Router, keep what changed.

Tasks and the department stage queue their per-fact messages in `routing_queue`; a pass takes those the
watermark has passed, in (created_at, message id) order, together with the silences and systemic closures
of the same times, decides each message's delivery and moves it to the outbox with the digests that fell
due. It runs in the department stage's transaction, under the same row lock: one pass at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.domain.routing import (
    GroupLog,
    Inhibition,
    Message,
    Routed,
    Router,
    RoutingState,
    Silence,
    drain_horizon,
    message_id,
)
from engine.store import tables as t
from engine.store.repository import OutboxRow, _chunks, _insert_new, _upsert, among, append_outbox
from engine.volume import Count, counts
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification
from schemas.decoding import decode_silence

PASS_LIMIT = 5000


@dataclass(frozen=True)
class Closure:
    """A systemic escalation's pair has no open pattern left (from the department stage)."""

    at: datetime
    department: str
    root_cause: str


async def queue(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Per-fact messages wait here for the routing stage; a message id already queued is skipped."""
    await _insert_new(
        conn,
        t.routing_queue,
        [
            {"message_id": r.message_id, "stream": r.stream, "key": r.key, "value": r.value, "created_at": r.created_at}
            for r in rows
        ],
    )


async def record_silence(
    conn: AsyncConnection, event_id: str, occurred_at: datetime, value: bytes, received_at: datetime
) -> None:
    """Keep a silence for the routing stage, unless its event id was kept before (a repeat: redelivered after a
    crash before the consumer's commit). The id stays among the processed events for the dedup window (the
    routing stage deletes what it applied, so its own table cannot tell)."""
    seen = select(t.processed_events.c.event_id).where(t.processed_events.c.event_id == event_id)
    if await conn.scalar(seen) is not None:
        return
    await _insert_new(
        conn, t.processed_events, [{"event_id": event_id, "event_type": "feedback.silence", "applied_at": received_at}]
    )
    await _record_event(conn, event_id, "silence", occurred_at, value)


async def record_closures(conn: AsyncConnection, closures: Sequence[Closure]) -> None:
    for c in closures:
        value = json.dumps({"department": c.department, "root_cause": c.root_cause}).encode()
        await _record_event(
            conn, f"systemic_closed|{c.department}|{c.root_cause}|{c.at.isoformat()}", "closed", c.at, value
        )


async def _record_event(conn: AsyncConnection, event_id: str, kind: str, at: datetime, value: bytes) -> None:
    row = {"event_id": event_id, "kind": kind, "occurred_at": at, "value": value}
    await _insert_new(conn, t.routing_events, [row])


def _parse(stream: str, value: bytes | str) -> Message:
    if stream == "notifications":
        return FeedbackNotification.model_validate_json(value)
    return EscalationRaised.model_validate_json(value)


def _stream(message: Message) -> str:
    return "notifications" if isinstance(message, FeedbackNotification) else "escalations"


def outbox_row(message: Routed, key: bytes | None) -> OutboxRow:
    if isinstance(message, FeedbackDigest):
        message_id, stream, key = message.digest_id, "notifications", message.recipient.id.encode()
    elif isinstance(message, FeedbackNotification):
        message_id, stream = message.notification_id, "notifications"
    else:
        message_id, stream = message.escalation_id, "escalations"
    return OutboxRow(message_id, stream, key, message.model_dump_json().encode(), message.created_at)


async def run_routing_stage(
    conn: AsyncConnection,
    router: Router,
    limit: datetime | None,
    drain: bool = False,
) -> tuple[list[Routed], int]:
    """Route what is queued before `limit` (everything when None) and flush the digests due by then; with
    `drain` (replay at the end of its input), flush every group still pending. Returns the routed messages in
    outbox order and how many queued rows and events it applied (0: nothing was waiting)."""
    state_row = (await conn.execute(select(t.engine_state.c.routing_clock).where(t.engine_state.c.id == 1))).first()
    clock = state_row.routing_clock if state_row else None
    messages_query = select(t.routing_queue).order_by(t.routing_queue.c.created_at, t.routing_queue.c.message_id)
    events_query = select(t.routing_events).order_by(t.routing_events.c.occurred_at, t.routing_events.c.event_id)
    if limit is not None:
        messages_query = messages_query.where(t.routing_queue.c.created_at < limit)
        events_query = events_query.where(t.routing_events.c.occurred_at < limit)
    queued = (await conn.execute(messages_query.limit(PASS_LIMIT))).all()
    events = (await conn.execute(events_query.limit(PASS_LIMIT))).all()
    # A pass cut short routes only what lies before the earlier cut (the rest comes next pass), and drains
    # nothing yet.
    cut: datetime | None = None
    for rows, column in ((queued, "created_at"), (events, "occurred_at")):
        if len(rows) == PASS_LIMIT:
            last = getattr(rows[-1], column)
            cut = last if cut is None else min(cut, last)
    target = limit
    if cut is not None:
        target, drain = (cut if limit is None else min(cut, limit)), False
        before = [r for r in queued if r.created_at < target], [r for r in events if r.occurred_at < target]
        if before[0] or before[1]:
            queued, events = before
        else:  # thousands at one instant: take them all, in order, and nothing later (the rest of the instant
            # comes next pass; a silence or digest after it must not come first)
            queued = [r for r in queued if r.created_at <= target]
            events = [r for r in events if r.occurred_at <= target]

    parsed = [(row, _parse(row.stream, row.value)) for row in queued]
    latest = max([m.created_at for _, m in parsed] + [e.occurred_at for e in events], default=clock)
    until = target if target is not None else latest
    if until is not None and latest is not None and until < latest:  # (the furthest clock is the latest time)
        until = latest
    if drain and latest is not None:
        until = max(filter(None, [until, latest, clock])) + drain_horizon(router.config)
    if not parsed and not events and (until is None or (clock is not None and until <= clock)):
        return [], 0

    recipients = sorted({router.labels(m)["recipient"][0] for _, m in parsed})
    state = await _load_state(conn, clock, recipients, until, everything=drain)
    keys = {message_id(m): row.key for row, m in parsed}

    routed: list[Routed] = []
    steps: list[tuple[datetime, int, str, Any]] = [(e.occurred_at, 0, e.event_id, e) for e in events]
    steps += [(m.created_at, 1, message_id(m), m) for _, m in parsed]
    for at, rank, _, item in sorted(steps, key=lambda s: (s[0], s[1], s[2])):
        if rank == 1:
            routed += router.route(item, state, at)
            continue
        routed += router.advance(at, state)
        if item.kind == "silence":
            router.apply_silence(decode_silence(item.value), state)
        else:
            pair = json.loads(item.value)
            router.systemic_closed(pair["department"], pair["root_cause"], at, state)
    if until is not None:
        routed += router.advance(until, state)

    await _save_state(conn, state)
    await append_outbox(conn, [outbox_row(m, keys.get(message_id(m))) for m in routed])
    await _count(conn, counts(routed, router.config))
    for chunk in _chunks([row.seq for row in queued]):
        await conn.execute(delete(t.routing_queue).where(among(conn, t.routing_queue.c.seq, chunk)))
    for chunk in _chunks([row.seq for row in events]):
        await conn.execute(delete(t.routing_events).where(among(conn, t.routing_events.c.seq, chunk)))
    if state.clock is not None and state.clock != clock:
        await conn.execute(update(t.engine_state).where(t.engine_state.c.id == 1).values(routing_clock=state.clock))
    return routed, len(queued) + len(events)


async def _load_state(
    conn: AsyncConnection, clock: datetime | None, recipients: list[str], until: datetime | None, everything: bool
) -> RoutingState:
    """The groups this pass can touch (its recipients' and those due by `until`), every silence and
    inhibition (few: an operator's silences, one inhibition per systemic pair)."""
    state = RoutingState(clock=clock)
    query = select(t.routing_groups)
    if not everything:
        conditions: list[ColumnElement[bool]] = []
        if recipients:
            conditions.append(among(conn, t.routing_groups.c.recipient, recipients))
        if until is not None:
            conditions.append(t.routing_groups.c.next_flush_at <= until)
        if not conditions:
            conditions.append(t.routing_groups.c.next_flush_at.is_not(None))
        query = query.where(or_(*conditions))
    for row in await conn.execute(query):
        state.groups[row.key] = GroupLog(
            key=row.key,
            route=row.route,
            recipient=row.recipient,
            audience=row.audience,
            pending=[_parse(item["stream"], item["value"]) for item in row.pending],
            first_pending_at=row.first_pending_at,
            last_notified_at=row.last_notified_at,
            next_flush_at=row.next_flush_at,
        )
    for row in await conn.execute(select(t.routing_silences)):
        state.silences[row.silence_id] = Silence(
            row.silence_id, dict(row.matchers), row.starts_at, row.ends_at, row.author, row.reason
        )
    for row in await conn.execute(select(t.routing_inhibitions)):
        state.inhibitions[row.key] = Inhibition(row.key, row.rule, row.opened_at)
    return state


async def _count(conn: AsyncConnection, found: Counter[Count]) -> None:
    """Add this pass's per-recipient, per-day counts to routing_volume (insert, or add to the row there)."""
    rows = [
        {"recipient": recipient, "day": day, "outcome": outcome, "audience": audience, "count": count}
        for (audience, recipient, day, outcome), count in sorted(found.items())
    ]
    if not rows:
        return
    table = t.routing_volume
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.recipient, table.c.day, table.c.outcome],
        set_={"count": table.c.count + statement.excluded.count},
    )
    # One statement for any number of rows (its compiled form is cached; rows as VALUES would compile anew
    # for each count, and that took a fifth of the routing stage).
    for chunk in _chunks(rows):
        await conn.execute(statement, list(chunk))


async def load_volume(conn: AsyncConnection) -> Counter[Count]:
    rows = await conn.execute(select(t.routing_volume))
    return Counter({(r.audience, r.recipient, r.day, r.outcome): r.count for r in rows})


async def _save_state(conn: AsyncConnection, state: RoutingState) -> None:
    changes = state.take_changes()
    await _upsert(
        conn,
        t.routing_groups,
        [
            {
                "key": g.key,
                "route": g.route,
                "recipient": g.recipient,
                "audience": g.audience,
                "pending": [{"stream": _stream(m), "value": m.model_dump_json()} for m in g.pending],
                "first_pending_at": g.first_pending_at,
                "last_notified_at": g.last_notified_at,
                "next_flush_at": g.next_flush_at,
            }
            for g in changes.groups.values()
        ],
    )
    await _upsert(
        conn,
        t.routing_silences,
        [
            {
                "silence_id": s.silence_id,
                "matchers": s.matchers,
                "starts_at": s.starts_at,
                "ends_at": s.ends_at,
                "author": s.author,
                "reason": s.reason,
            }
            for s in changes.silences.values()
        ],
    )
    opened = [i for i in changes.inhibitions.values() if i is not None]
    await _insert_new(
        conn, t.routing_inhibitions, [{"key": i.key, "rule": i.rule, "opened_at": i.opened_at} for i in opened]
    )
    closed = [key for key, i in changes.inhibitions.items() if i is None]
    for chunk in _chunks(closed):
        await conn.execute(delete(t.routing_inhibitions).where(among(conn, t.routing_inhibitions.c.key, chunk)))
