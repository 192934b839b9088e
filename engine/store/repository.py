"""Maps the domain to tables: loads the slice of state a batch needs, writes back what it changed.

Every read is a bulk query keyed by what the batch's events name, so the cost of a batch depends on the
batch, not on how many cases and patterns are stored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Row, Table, and_, any_, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clocks import ClockHistory
from engine.domain import ids
from engine.domain.checks import has_check, undercoded_levels
from engine.domain.codebook import CodeBook
from engine.domain.departments import DepartmentStage, DepartmentState, systemic_id
from engine.domain.model import (
    Case,
    DepartmentFact,
    EvidenceRef,
    ExposureNote,
    Note,
    Pattern,
    PatternKey,
    PatternStatus,
)
from engine.domain.state import Changes, State
from engine.store import tables as t
from schemas import (
    Author,
    ClaimDenied,
    EscalationRaised,
    FeedbackAcknowledged,
    FeedbackReviewed,
    InboundEvent,
    NoteSigned,
    RenderingProvider,
    RootCause,
)

# A note matters only to watched (open or dormant) patterns whose root cause has a documentation check
# (pre-bill alerts, compliant notes) or was told to a clinician (exposure, for resolution on evidence); the
# others (billing-only causes) need not be loaded for it.
WATCHED = [PatternStatus.OPEN.value, PatternStatus.DORMANT.value]


def note_root_causes(codebook: CodeBook) -> list[str]:
    return sorted(cause.value for cause in RootCause if has_check(cause) or codebook.is_clinician_facing(cause))


# Keep IN-lists well below the bind-parameter limits of SQLite (32766) and PostgreSQL (32767).
CHUNK = 500


@dataclass(frozen=True)
class OutboxRow:
    message_id: str
    stream: str
    key: bytes | None
    value: bytes | None  # None: a tombstone sent to the DLQ as it came
    created_at: datetime
    reason: str | None = None


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def among(conn: AsyncConnection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one statement text whatever the count, so
    asyncpg prepares it once per connection (an IN list of each new length is one more statement to expand,
    parse, plan and cache, a round trip each)."""
    if conn.dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def among_rows(conn: AsyncConnection, columns: Sequence[Any], rows: Sequence[tuple[Any, ...]]) -> Any:
    """`(columns) IN (rows)`; on PostgreSQL against the rows unnested from one array per column."""
    if conn.dialect.name != "postgresql":
        return tuple_(*columns).in_(rows)
    arrays = [
        bindparam(None, [row[i] for row in rows], type_=postgresql.ARRAY(column.type))
        for i, column in enumerate(columns)
    ]
    return tuple_(*columns).in_(select(*(func.unnest(array) for array in arrays)))


def _insert(conn: AsyncConnection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def _write_postgresql(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], update: bool) -> None:
    """All rows in one statement with one array parameter per column (`INSERT ... SELECT FROM unnest(...)`).

    Row-by-row parameters cost more Python time than everything else a batch does; arrays are encoded by the
    driver in C. Rows keep their order (outbox order is publication order)."""
    dialect = conn.dialect
    names = list(rows[0])
    arrays, casts = [], []
    for position, name in enumerate(names, start=1):
        column_type = table.c[name].type
        process = _json_text if isinstance(column_type, JSON) else column_type.bind_processor(dialect)
        values = [row[name] for row in rows]
        arrays.append([process(v) for v in values] if process else values)
        casts.append(f"${position}::{column_type.compile(dialect=dialect)}[]")
    columns = ", ".join(f'"{name}"' for name in names)
    statement = (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} FROM unnest({", ".join(casts)}) '
        f"WITH ORDINALITY AS given({columns}, position) ORDER BY position "
    )
    if update:
        key = [c.name for c in table.primary_key.columns]
        changes = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in names if n not in key)
        statement += f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {changes}"
    else:
        statement += "ON CONFLICT DO NOTHING"
    raw = await conn.get_raw_connection()
    await raw.driver_connection.execute(statement, *arrays)  # type: ignore[union-attr]


def _json_text(value: Any) -> str:
    """A JSON column's text (its lists are mostly empty: those skip the encoder)."""
    return "[]" if value == [] else json.dumps(value)


async def _upsert(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await _write_postgresql(conn, table, rows, update=True)
        return
    key = [c.name for c in table.primary_key.columns]
    statement = _insert(conn, table)
    statement = statement.on_conflict_do_update(
        index_elements=key, set_={c.name: statement.excluded[c.name] for c in table.columns if c.name not in key}
    )
    for chunk in _chunks(rows):
        await conn.execute(statement, list(chunk))


async def _insert_new(conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        await _write_postgresql(conn, table, rows, update=False)
        return
    statement = _insert(conn, table).on_conflict_do_nothing()
    for chunk in _chunks(rows):
        await conn.execute(statement, list(chunk))


# ---- row <-> domain ---------------------------------------------------------------------------------


def _case(row: Row[Any]) -> Case:
    return Case(
        case_id=row.case_id,
        claim_id=row.claim_id,
        line_number=row.line_number,
        root_cause=RootCause(row.root_cause),
        provider_npi=row.provider_npi,
        department=row.department,
        procedure_code=row.procedure_code,
        modifiers=list(row.modifiers),
        encounter_id=row.encounter_id,
        service_date=row.service_date,
        amount=row.amount,
        reason_codes=list(row.reason_codes),
        payer_id=row.payer_id,
        pattern_id=row.pattern_id,
        post_feedback=row.post_feedback,
        first_denied_at=row.first_denied_at,
        last_denied_at=row.last_denied_at,
        denial_count=row.denial_count,
        note_id=row.note_id,
        patient_hash=row.patient_hash,
    )


def _case_row(case: Case, task: int) -> dict[str, Any]:
    return {
        "task": task,
        "case_id": case.case_id,
        "claim_id": case.claim_id,
        "line_number": case.line_number,
        "root_cause": case.root_cause.value,
        "provider_npi": case.provider_npi,
        "department": case.department,
        "procedure_code": case.procedure_code,
        "modifiers": case.modifiers,
        "encounter_id": case.encounter_id,
        "service_date": case.service_date,
        "amount": case.amount,
        "reason_codes": case.reason_codes,
        "payer_id": case.payer_id,
        "pattern_id": case.pattern_id,
        "post_feedback": case.post_feedback,
        "first_denied_at": case.first_denied_at,
        "last_denied_at": case.last_denied_at,
        "denial_count": case.denial_count,
        "note_id": case.note_id,
        "patient_hash": case.patient_hash,
    }


def _pattern(row: Row[Any]) -> Pattern:
    return Pattern(
        pattern_id=row.pattern_id,
        provider_npi=row.provider_npi,
        root_cause=RootCause(row.root_cause),
        procedure_code=row.procedure_code,
        episode=row.episode,
        department=row.department,
        status=PatternStatus(row.status),
        case_count=row.case_count,
        post_feedback_cases=row.post_feedback_cases,
        amount_at_risk=row.amount_at_risk,
        reason_codes=list(row.reason_codes),
        evidence=[
            EvidenceRef(e["claim_id"], e["encounter_id"], date.fromisoformat(e["service_date"]), e.get("payer_id", ""))
            for e in row.evidence
        ],
        last_service_date=row.last_service_date,
        billed_with_modifier_25=row.billed_with_modifier_25,
        opened_at=row.opened_at,
        acknowledged_at=row.acknowledged_at,
        ack_response=row.ack_response,
        reminded=row.reminded,
        compliant_notes=row.compliant_notes,
        resolved_at=row.resolved_at,
        next_due_at=row.next_due_at,
        escalations=list(row.escalations),
        quarantine=row.quarantine,
        provider_name=row.provider_name,
        exposure=[ExposureNote(date.fromisoformat(e[0]), e[1]) for e in row.exposure],
        dormant_at=row.dormant_at,
        disputes=row.disputes,
        disputed_at=row.disputed_at,
        reviewed_at=row.reviewed_at,
        review_outcome=row.review_outcome,
        alerts_no_change=row.alerts_no_change,
    )


def _pattern_row(p: Pattern, task: int) -> dict[str, Any]:
    return {
        "task": task,
        "pattern_id": p.pattern_id,
        "provider_npi": p.provider_npi,
        "root_cause": p.root_cause.value,
        "procedure_code": p.procedure_code,
        "episode": p.episode,
        "department": p.department,
        "status": p.status.value,
        "case_count": p.case_count,
        "post_feedback_cases": p.post_feedback_cases,
        "amount_at_risk": p.amount_at_risk,
        "reason_codes": p.reason_codes,
        "evidence": [
            {
                "claim_id": e.claim_id,
                "encounter_id": e.encounter_id,
                "service_date": e.service_date.isoformat(),
                "payer_id": e.payer_id,
            }
            for e in p.evidence
        ],
        "last_service_date": p.last_service_date,
        "billed_with_modifier_25": p.billed_with_modifier_25,
        "opened_at": p.opened_at,
        "acknowledged_at": p.acknowledged_at,
        "ack_response": p.ack_response,
        "reminded": p.reminded,
        "compliant_notes": p.compliant_notes,
        "resolved_at": p.resolved_at,
        "next_due_at": p.next_due_at,
        "escalations": p.escalations,
        "quarantine": p.quarantine,
        "provider_name": p.provider_name,
        "exposure": [[e.service_date.isoformat(), e.encounter_id] for e in p.exposure],
        "dormant_at": p.dormant_at,
        "disputes": p.disputes,
        "disputed_at": p.disputed_at,
        "reviewed_at": p.reviewed_at,
        "review_outcome": p.review_outcome,
        "alerts_no_change": p.alerts_no_change,
    }


def _note(row: Row[Any]) -> Note:
    return Note(
        note_id=row.note_id,
        encounter_id=row.encounter_id,
        provider_npi=row.provider_npi,
        service_date=row.service_date,
        signed_at=row.signed_at,
        patient_hash=row.patient_hash,
        pre_bill_alerted=row.pre_bill_alerted,
        compliant_for=list(row.compliant_for),
        procedure_codes=list(row.procedure_codes),
    )


def _note_row(n: Note, task: int) -> dict[str, Any]:
    return {
        "task": task,
        "note_id": n.note_id,
        "encounter_id": n.encounter_id,
        "provider_npi": n.provider_npi,
        "service_date": n.service_date,
        "signed_at": n.signed_at,
        "patient_hash": n.patient_hash,
        "pre_bill_alerted": n.pre_bill_alerted,
        "compliant_for": n.compliant_for,
        "procedure_codes": n.procedure_codes,
    }


# ---- the engine-wide row: clock and serialisation point ---------------------------------------------


@dataclass(frozen=True)
class EngineClock:
    clock: datetime | None
    last_event_wall_at: datetime | None
    idle_since: datetime | None = None  # (a task's)
    event_clock: datetime | None = None  # (a task's: the latest occurred_at applied from a record)


async def lock_clock(conn: AsyncConnection) -> EngineClock:
    """Read the event-time clock, holding its row lock until commit: batches of all replicas apply in turn."""
    query = select(t.engine_state).where(t.engine_state.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        await _insert_new(conn, t.engine_state, [{"id": 1, "clock": None, "last_event_wall_at": None}])
        row = (await conn.execute(query)).first()
        assert row is not None
    return EngineClock(row.clock, row.last_event_wall_at)


async def lock_task(conn: AsyncConnection, task: int) -> EngineClock:
    """Read a task's event-time clock, holding its row lock until commit: the task's batches apply in turn
    (a replica that lost the task mid-batch waits here, then finds the positions moved on)."""
    return (await lock_tasks(conn, [task]))[task]


async def lock_tasks(conn: AsyncConnection, tasks: Sequence[int]) -> dict[int, EngineClock]:
    """lock_task for several tasks, locked in task order (as the department stage locks them: no deadlock)."""
    query = select(t.tasks).where(among(conn, t.tasks.c.task, sorted(tasks))).order_by(t.tasks.c.task)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = {row.task: row for row in await conn.execute(query)}
    if missing := [task for task in tasks if task not in rows]:
        await _insert_new(
            conn, t.tasks, [{"task": task, "clock": None, "last_event_wall_at": None} for task in missing]
        )
        rows = {row.task: row for row in await conn.execute(query)}
    return {
        task: EngineClock(row.clock, row.last_event_wall_at, row.idle_since, row.event_clock)
        for task, row in rows.items()
    }


async def save_task(
    conn: AsyncConnection,
    task: int,
    clock: datetime | None,
    last_event_wall_at: datetime | None,
    idle_since: datetime | None,
    event_clock: datetime | None,
) -> None:
    await conn.execute(
        update(t.tasks)
        .where(t.tasks.c.task == task)
        .values(clock=clock, last_event_wall_at=last_event_wall_at, idle_since=idle_since, event_clock=event_clock)
    )


async def save_tasks(
    conn: AsyncConnection,
    tasks: Sequence[tuple[int, datetime | None, datetime | None, datetime | None, datetime | None]],
) -> None:
    """save_task for several tasks: (task, clock, last_event_wall_at, idle_since, event_clock) each."""
    if conn.dialect.name == "postgresql" and len(tasks) > 1:
        names = ("task", "clock", "last_event_wall_at", "idle_since", "event_clock")
        await _write_postgresql(conn, t.tasks, [dict(zip(names, row, strict=True)) for row in tasks], update=True)
        return
    for row in tasks:
        await save_task(conn, *row)


async def positions(conn: AsyncConnection, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The next offset to apply of each input partition (absent: nothing applied from it yet)."""
    found: dict[tuple[str, int], int] = {}
    for chunk in _chunks(sorted(set(partitions))):
        query = select(t.task_positions).where(
            among_rows(conn, (t.task_positions.c.topic, t.task_positions.c.partition), chunk)
        )
        for row in await conn.execute(query):
            found[(row.topic, row.partition)] = row.next_offset
    return found


async def save_positions(conn: AsyncConnection, moved: dict[tuple[str, int], int]) -> None:
    await _upsert(
        conn,
        t.task_positions,
        [
            {"topic": topic, "partition": partition, "next_offset": offset}
            for (topic, partition), offset in moved.items()
        ],
    )


async def claim_partitions(conn: AsyncConnection, partitions: int) -> int:
    """The partition count the store's task numbers are for: set by the first start, then fixed."""
    await lock_clock(conn)
    stored = await conn.scalar(select(t.engine_state.c.partitions).where(t.engine_state.c.id == 1))
    if stored is None:
        await conn.execute(update(t.engine_state).where(t.engine_state.c.id == 1).values(partitions=partitions))
        return partitions
    return int(stored)


async def save_clock(conn: AsyncConnection, clock: datetime | None, last_event_wall_at: datetime | None) -> None:
    await conn.execute(
        update(t.engine_state)
        .where(t.engine_state.c.id == 1)
        .values(clock=clock, last_event_wall_at=last_event_wall_at)
    )


# ---- loading what a batch needs ---------------------------------------------------------------------


@dataclass(frozen=True)
class TaskLoad:
    """What one task's batch needs: its events, and its clock with the time up to which its timers fall due."""

    events: Sequence[InboundEvent]
    until: datetime
    clock: datetime | None


class SharedConflict(Exception):
    """Two tasks of one shared transaction touch the same provider, case, encounter or notification: the later
    one would not see what the earlier one writes (each loads the store as it was before the transaction), and
    their writes of one row would collide. Each is applied on its own instead (Processor.apply_together)."""


def _check_apart(
    wanted: dict[int, TaskLoad],
    states: dict[int, State],
    case_ids: dict[int, set[str]],
    encounters: dict[int, set[str]],
    named: dict[int, set[str]],
) -> None:
    """Raise SharedConflict unless the tasks' slices of state are apart. Keyed as documented, each provider's
    events are in one task; two tasks meet on an encounter two clinicians sign (a resident and an attending),
    a claim resubmitted under another provider, or a misrouted event."""
    owner: dict[tuple[str, str], int] = {}
    for task in sorted(wanted):
        providers = {p.provider_npi for p in states[task].loaded_patterns()}
        providers.update(npi for e in wanted[task].events if (npi := _provider(e)) is not None)
        touched = {("provider", npi) for npi in providers} | {("case", c) for c in case_ids[task]}
        touched |= {("encounter", e) for e in encounters[task]} | {("notification", n) for n in named[task]}
        for item in touched:
            if owner.setdefault(item, task) != task:
                raise SharedConflict


def _provider(event: InboundEvent) -> str | None:
    if isinstance(event, ClaimDenied):
        return event.rendering_provider.npi
    if isinstance(event, NoteSigned):
        return event.author.npi
    if isinstance(event, FeedbackAcknowledged | FeedbackReviewed) and event.pattern_key is not None:
        return event.pattern_key.provider_npi
    return None


# A value a query asks for, and the tasks that asked for it (in task order).
Asked = dict[Any, list[int]]


def _asked(wanted: Mapping[int, Iterable[Any]]) -> Asked:
    asked: Asked = {}
    for task in sorted(wanted):
        for value in wanted[task]:
            asked.setdefault(value, []).append(task)
    return asked


class BatchLoader:
    """Collects what a batch's events name, then loads it in a handful of bulk queries.

    Several tasks' batches load together in the same queries (one transaction applies the small batches of
    several tasks at a low rate): each query asks for what all of them name, and a row goes only to the state
    of each task that asked for it, as if each task had asked alone. A task's state is its own: two tasks that
    ask for one row (a misrouted event) get a copy each."""

    def __init__(
        self,
        conn: AsyncConnection,
        codebook: CodeBook,
        window_days: int,
        applied_at: datetime | None = None,
        task: int = 0,
    ) -> None:
        self.conn = conn
        self.task = task  # (load): only this task's rows: another task's state belongs to its own clock
        self.applied_at = applied_at  # wall time: the dedup window is pruned by it
        self.codebook = codebook
        self.window = timedelta(days=window_days)
        self.events_recorded = False  # True once load() has written the batch's event ids itself

    async def load(self, events: Sequence[InboundEvent], until: datetime, clock: datetime | None) -> State:
        return (await self.load_tasks({self.task: TaskLoad(events, until, clock)}))[self.task]

    async def load_tasks(self, wanted: dict[int, TaskLoad]) -> dict[int, State]:
        states = {task: State(load.clock) for task, load in wanted.items()}
        tasks = sorted(wanted)
        await self._load_events(states, wanted)

        case_ids: dict[int, set[str]] = {task: set() for task in tasks}
        keys: dict[int, set[PatternKey]] = {task: set() for task in tasks}
        service_dates: dict[int, list[date]] = {task: [] for task in tasks}
        named: dict[int, set[str]] = {task: set() for task in tasks}  # notifications acknowledgements name
        encounters: dict[int, set[str]] = {task: set() for task in tasks}
        noted: dict[int, set[str]] = {task: set() for task in tasks}  # encounters of the notes
        documented: dict[int, set[tuple[str, str]]] = {task: set() for task in tasks}
        for task, load in wanted.items():
            for event in load.events:
                if isinstance(event, ClaimDenied):
                    encounters[task].add(event.encounter_id)
                    for line in event.lines:
                        for finding in self.codebook.classify(line):
                            root_cause, npi = finding.root_cause.value, event.rendering_provider.npi
                            case_ids[task].add(ids.case_id(event.claim_id, line.line_number, root_cause, npi))
                            keys[task].add(
                                PatternKey(event.rendering_provider.npi, finding.root_cause, line.procedure_code)
                            )
                            service_dates[task].append(event.service_date)
                elif isinstance(event, NoteSigned):  # undercoding: a note can be a case, with its pattern and threshold
                    encounters[task].add(event.encounter_id)
                    noted[task].add(event.encounter_id)
                    documented[task].update((event.author.npi, code) for code in event.documentation.procedure_codes)
                    for code, _ in undercoded_levels(event.documentation):
                        cause = RootCause.EM_LEVEL_UNDERCODED
                        case_ids[task].add(ids.note_case_id(event.encounter_id, code, cause.value, event.author.npi))
                        keys[task].add(PatternKey(event.author.npi, cause, code))
                        service_dates[task].append(event.service_date)
                elif isinstance(event, FeedbackAcknowledged | FeedbackReviewed):
                    if event.pattern_key is not None:
                        k = event.pattern_key
                        keys[task].add(PatternKey(k.provider_npi, k.root_cause, k.procedure_code))
                    if event.notification_id:
                        named[task].add(event.notification_id)

        # Acknowledgements that name a notification: find its pattern, then that key's current episode.
        named_patterns: dict[int, set[str]] = {task: set() for task in tasks}
        async for task, row in self._rows(t.notifications, (t.notifications.c.notification_id,), _asked(named)):
            states[task].load_notification(row.notification_id, row.pattern_id)
            named_patterns[task].add(row.pattern_id)

        await self._load_cases(states, t.cases.c.case_id, _asked(case_ids))
        found = await self._load_patterns(states, (t.patterns.c.pattern_id,), _asked(named_patterns), own=True)
        for task, patterns in found.items():
            keys[task].update(p.key for p in patterns)
        await self._load_patterns_by_key(states, keys)
        # Patterns of cases denied again may be earlier episodes.
        case_patterns = {
            task: {c.pattern_id for c in (states[task].case(i) for i in case_ids[task]) if c is not None}
            for task in tasks
        }
        await self._load_patterns(states, (t.patterns.c.pattern_id,), _asked(case_patterns))

        # Pending episodes need the cases near the new service dates to test the threshold.
        pending = {
            task: {
                p.pattern_id
                for k in keys[task]
                if (p := states[task].current_pattern(k)) is not None and p.status is PatternStatus.PENDING
            }
            if service_dates[task]
            else set()
            for task in tasks
        }
        window = {
            task: (min(dates) - self.window, max(dates) + self.window) for task, dates in service_dates.items() if dates
        }
        if any(pending.values()):
            first = min(window[task][0] for task in tasks if pending[task])
            last = max(window[task][1] for task in tasks if pending[task])
            await self._load_cases(
                states,
                t.cases.c.pattern_id,
                _asked(pending),
                t.cases.c.service_date.between(first, last),
                lambda task, row: window[task][0] <= row.service_date <= window[task][1],
            )

        # Notes: the encounter's notes (the note itself among them, when signed again) and cases, and the
        # author's open patterns on the procedures the note documents (the only ones a note counts for).
        async for task, row in self._rows(t.notes, (t.notes.c.encounter_id,), _asked(encounters), own=True):
            states[task].load_note(_note(row))
        await self._load_cases(states, t.cases.c.encounter_id, _asked(noted), own=True)
        await self._load_patterns(
            states,
            (t.patterns.c.provider_npi, t.patterns.c.procedure_code),
            _asked(documented),
            and_(t.patterns.c.status.in_(WATCHED), t.patterns.c.root_cause.in_(note_root_causes(self.codebook))),
        )

        # Timers of each task that fall due before its batch's last event.
        due = t.patterns.c.next_due_at <= max(load.until for load in wanted.values())
        await self._load_patterns(
            states,
            (t.patterns.c.task,),
            {task: [task] for task in tasks},
            due,
            lambda task, row: row.next_due_at <= wanted[task].until,
        )
        # Resolutions and acknowledgements need each key's latest episode, not just the one found.
        await self._load_patterns_by_key(
            states, {task: {p.key for p in states[task].loaded_patterns()} - keys[task] for task in tasks}
        )
        if len(tasks) > 1:
            _check_apart(wanted, states, case_ids, encounters, named)
        return states

    async def _load_events(self, states: dict[int, State], wanted: dict[int, TaskLoad]) -> None:
        """Mark the events applied already (in the store, or in the batch of a task before, in task order)."""
        tasks = sorted(wanted)
        given = [event for task in tasks for event in wanted[task].events]
        if self.conn.dialect.name == "postgresql" and given:
            # Record the batch's event ids first, in one statement: those already there are duplicates.
            statement = text(
                "INSERT INTO processed_events (event_id, event_type, applied_at) "
                "SELECT * FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:types AS VARCHAR[]), "
                "CAST(:at AS TIMESTAMPTZ[])) ON CONFLICT DO NOTHING RETURNING event_id"
            )
            arguments = {
                "ids": [e.event_id for e in given],
                "types": [e.event_type for e in given],
                "at": [self.applied_at or max(load.until for load in wanted.values())] * len(given),
            }
            new = set((await self.conn.execute(statement, arguments)).scalars())
            self.events_recorded = True
        else:
            new = {e.event_id for e in given}
            for chunk in _chunks(sorted(new)):
                rows = await self.conn.execute(
                    select(t.processed_events.c.event_id).where(t.processed_events.c.event_id.in_(chunk))
                )
                new.difference_update(event_id for (event_id,) in rows)
        taken: set[str] = set()  # new, and applied by a task before
        for task in tasks:
            mine = {event.event_id for event in wanted[task].events}
            for event_id in mine - new | mine & taken:
                states[task].load_event(event_id)
            taken |= mine

    async def _rows(
        self, table: Table, columns: tuple[Any, ...], asked: Asked, condition: Any = None, own: bool = False
    ) -> AsyncIterator[tuple[int, Row[Any]]]:
        """Rows whose `columns` hold a value some task asked for, each with every task that asked for it
        (`own`: only the task the row belongs to)."""
        values = sorted(asked)
        tasks = sorted({task for askers in asked.values() for task in askers})
        for chunk in _chunks(values):
            if len(columns) == 1:
                where = [among(self.conn, columns[0], chunk)]
            else:
                where = [among_rows(self.conn, columns, chunk)]
            if own:
                where.append(among(self.conn, table.c.task, tasks))
            if condition is not None:
                where.append(condition)
            for row in await self.conn.execute(select(table).where(*where)):
                value = (
                    getattr(row, columns[0].name) if len(columns) == 1 else tuple(getattr(row, c.name) for c in columns)
                )
                for task in asked.get(value, ()):
                    if not own or row.task == task:
                        yield task, row

    async def _load_cases(
        self,
        states: dict[int, State],
        column: Any,
        asked: Asked,
        condition: Any = None,
        keep: Callable[[int, Row[Any]], bool] | None = None,
        own: bool = False,
    ) -> None:
        async for task, row in self._rows(t.cases, (column,), asked, condition, own):
            if (keep is None or keep(task, row)) and states[task].case(row.case_id) is None:
                states[task].load_case(_case(row))

    async def _load_patterns(
        self,
        states: dict[int, State],
        columns: tuple[Any, ...],
        asked: Asked,
        condition: Any = None,
        keep: Callable[[int, Row[Any]], bool] | None = None,
        own: bool = False,
    ) -> dict[int, list[Pattern]]:
        loaded: dict[int, list[Pattern]] = {}
        async for task, row in self._rows(t.patterns, columns, asked, condition, own):
            if keep is not None and not keep(task, row):
                continue
            pattern = states[task].pattern(row.pattern_id)
            if pattern is None:
                pattern = _pattern(row)
                states[task].load_pattern(pattern)
            loaded.setdefault(task, []).append(pattern)
        return loaded

    async def _load_patterns_by_key(self, states: dict[int, State], keys: dict[int, set[PatternKey]]) -> None:
        columns = (t.patterns.c.provider_npi, t.patterns.c.root_cause, t.patterns.c.procedure_code)
        asked = _asked(
            {task: [(k.provider_npi, k.root_cause.value, k.procedure_code) for k in ks] for task, ks in keys.items()}
        )
        await self._load_patterns(states, columns, asked)


# ---- writing back -----------------------------------------------------------------------------------


async def save_changes(
    conn: AsyncConnection, changes: Changes, applied_at: datetime, record_events: bool = True, task: int = 0
) -> None:
    await save_changes_of_tasks(conn, [(task, changes)], applied_at, record_events)


async def save_changes_of_tasks(
    conn: AsyncConnection, changes: Sequence[tuple[int, Changes]], applied_at: datetime, record_events: bool = True
) -> None:
    """Several tasks' changes, one statement per table."""
    if record_events:
        await _insert_new(
            conn,
            t.processed_events,
            [
                {"event_id": i, "event_type": kind, "applied_at": applied_at}
                for _, c in changes
                for i, kind in c.events.items()
            ],
        )
    await _upsert(conn, t.patterns, [_pattern_row(p, task) for task, c in changes for p in c.patterns.values()])
    await _upsert(conn, t.cases, [_case_row(case, task) for task, c in changes for case in c.cases.values()])
    await _upsert(conn, t.notes, [_note_row(n, task) for task, c in changes for n in c.notes.values()])
    await _insert_new(conn, t.department_facts, [_fact_row(f) for _, c in changes for f in c.facts])
    await _insert_new(
        conn,
        t.notifications,
        [{"notification_id": n, "pattern_id": p} for _, c in changes for n, p in c.notifications.items()],
    )
    await _insert_new(conn, t.escalations, [_escalation_row(e) for _, c in changes for e in c.escalations])


def _escalation_row(e: EscalationRaised) -> dict[str, Any]:
    return {
        "escalation_id": e.escalation_id,
        "level": e.level,
        "reason": e.reason,
        "pattern_id": e.pattern_id,
        "department": e.department,
        "root_cause": e.root_cause.value,
        "created_at": e.created_at,
        "summary": e.summary[:1000],
        "providers": ",".join(e.facts.providers)[:2000] or None,
    }


def _fact_row(f: DepartmentFact) -> dict[str, Any]:
    return {
        "department": f.department,
        "root_cause": f.root_cause.value,
        "pattern_id": f.pattern_id,
        "provider_npi": f.provider_npi,
        "opened": f.opened,
        "at": f.at,
        "snapshot": f.snapshot,
    }


def _fact(row: Row[Any]) -> DepartmentFact:
    return DepartmentFact(
        row.department, RootCause(row.root_cause), row.pattern_id, row.provider_npi, row.opened, row.at, row.snapshot
    )


async def save_providers(conn: AsyncConnection, events: Sequence[InboundEvent]) -> None:
    """Keep the latest name and department per NPI that claims (rendering provider) and notes (author) carry.

    "Latest" is by event time, so a late or redelivered event never overwrites a newer name. Events without a
    name are skipped: an empty name would hide one learned earlier."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, ClaimDenied):
            who: RenderingProvider | Author = event.rendering_provider
        elif isinstance(event, NoteSigned):
            who = event.author
        else:
            continue
        seen = event.occurred_at
        if not who.name or (who.npi in latest and latest[who.npi]["last_seen_at"] >= seen):
            continue
        latest[who.npi] = {"npi": who.npi, "name": who.name, "department": who.department, "last_seen_at": seen}
    if not latest:
        return
    statement = _insert(conn, t.providers)
    statement = statement.on_conflict_do_update(
        index_elements=["npi"],
        set_={name: statement.excluded[name] for name in ("name", "department", "last_seen_at")},
        where=statement.excluded.last_seen_at >= t.providers.c.last_seen_at,
    )
    rows = [latest[npi] for npi in sorted(latest)]
    for chunk in _chunks(rows):
        await conn.execute(statement, list(chunk))


HOT_TABLES = ("processed_events", "notes", "cases", "patterns", "notifications", "escalations", "outbox")


async def refresh_statistics(database: AsyncEngine) -> list[str]:
    """ANALYZE the tables the batch queries read that have at least doubled since their last ANALYZE
    (PostgreSQL; SQLite plans these lookups well without). A large store's tables are left to autovacuum."""
    if database.dialect.name != "postgresql":
        return []
    async with database.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = await conn.execute(
            text(
                "SELECT relname, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = ANY(:names)"
            ),
            {"names": list(HOT_TABLES)},
        )
        stale = sorted(
            r.relname for r in rows if r.n_mod_since_analyze > 1000 and 2 * r.n_mod_since_analyze > r.n_live_tup
        )
        if stale:
            await conn.execute(text("ANALYZE " + ", ".join(stale)))
    return stale


# ---- the department stage ----------------------------------------------------------------------------


@dataclass
class Watermark:
    """How far the stages may go: facts and messages before `limit` (None: nothing bounds them), unless
    `may_run` is False; `advance`: quiet tasks whose timers due by the settled time must fire first."""

    may_run: bool
    limit: datetime | None
    advance: dict[int, datetime]


async def watermark(
    conn: AsyncConnection,
    partitions: int,
    behind: set[int],
    history: ClockHistory | None = None,
    asked_at: float | None = None,
    idle_advanced_to: datetime | None = None,
    held: dict[int, datetime | None] | None = None,
) -> Watermark:
    """The smallest of the tasks' bounds.

    - A task with input in the broker not applied yet (`behind`) is bound by its clock: it may still add facts
      and messages at it (no clock yet: nothing may run).
    - Unless that input is all held back by this replica while the task waits for a quiet input (`held`: the
      earliest time among those records, None: none has a time; TaskRunner.held_back). Then the task applies
      nothing earlier than those records or records yet to reach the broker (later than the settled time S):
      it is bound by its clock or, when later, the earliest of those records, just after S and its first
      timer due (a timer fires with the next event, at its due time), whichever comes first. Without this, a
      message at a low rate waits a second allowance: for another task to apply a record held back for its own
      quiet input.
    - A task with none (quiet) gets only records that reach the broker from now on; under the promise those are
      later than the settled time S (engine/clocks.py, from the tasks' event clocks). It is bound by its clock or,
      when S is later, just after S (its timers due by S fire first: `advance`).
    - A quiet task with no clock (no event ever) is bound just after S, or at `idle_advanced_to` if that is later
      (once serve has run for DOCLOOP_IDLE_ADVANCE_MINUTES: wall time less that, where the ticker puts quiet
      tasks); before anything has settled (serve just started), nothing may run."""
    rows = {row.task: row for row in await conn.execute(select(t.tasks).where(t.tasks.c.task < partitions))}
    clocks = {task: (rows[task].clock if task in rows else None) for task in range(partitions)}
    settled: datetime | None = None
    if history is not None:
        history.observe({task: row.event_clock for task, row in rows.items()})
        settled = history.settled(history.clock() if asked_at is None else asked_at)
    after = None if settled is None else settled + timedelta(microseconds=1)
    limit: datetime | None = None
    advance: list[int] = []
    first_due = await _first_due(conn, set(held or {}) & behind) if after is not None else {}
    for task, clock in clocks.items():
        if task in behind:
            if clock is None:
                return Watermark(False, None, {})
            bound = clock
            if after is not None and held is not None and task in held:
                earliest = min(at for at in (after, held[task], first_due.get(task)) if at is not None)
                bound = max(clock, earliest)
        elif clock is None:
            if after is None:
                return Watermark(False, None, {})
            bound = max(after, idle_advanced_to or after)
        elif settled is not None and clock <= settled:
            bound = after
            if clock < settled:
                advance.append(task)
        else:
            bound = clock
        limit = bound if limit is None else min(limit, bound)
    due: dict[int, datetime] = {}
    if advance and settled is not None:
        pending = t.patterns.c.task.in_(advance), t.patterns.c.next_due_at <= settled
        found = await conn.execute(select(t.patterns.c.task).where(*pending).distinct())
        due = {task: settled for (task,) in found}
    return Watermark(True, limit, due)


async def _first_due(conn: AsyncConnection, tasks: set[int]) -> dict[int, datetime]:
    """Each task's first timer due (patterns' next_due_at)."""
    if not tasks:
        return {}
    p = t.patterns.c
    query = select(p.task, func.min(p.next_due_at)).where(p.task.in_(sorted(tasks))).group_by(p.task)
    return {task: due for task, due in await conn.execute(query) if due is not None}


STAGE_PASS_LIMIT = 5000


@dataclass
class StagePass:
    """What one department-stage pass did, and how far the routing stage may go after it: the messages and
    digests due before `route_until` (None: everything queued), unless `may_route` is False (a task behind has no
    clock yet)."""

    escalations: list[EscalationRaised]
    facts: int
    closed: list[tuple[datetime, str, str]]
    may_route: bool
    route_until: datetime | None


async def run_department_stage(
    conn: AsyncConnection,
    stage: DepartmentStage,
    partitions: int,
    everything: bool = False,
    behind: set[int] | None = None,
    history: ClockHistory | None = None,
    asked_at: float | None = None,
    advance: Callable[[AsyncConnection, dict[int, datetime]], Awaitable[None]] | None = None,
    idle_advanced_to: datetime | None = None,
    held: dict[int, datetime | None] | None = None,
) -> StagePass:
    """Apply, in event-time order, the department facts that every task's clock has passed (strictly: a task
    at clock T may still record a fact at T; see `watermark`). One pass at a time (the stage's row lock).
    `advance` first fires the timers of quiet tasks that the watermark passes (their messages and facts are
    then below it too)."""
    stage_clock = await lock_clock(conn)
    query = select(t.department_facts).order_by(
        t.department_facts.c.at, t.department_facts.c.pattern_id, t.department_facts.c.opened, t.department_facts.c.seq
    )
    limit: datetime | None = None
    if not everything:
        mark = await watermark(conn, partitions, behind or set(), history, asked_at, idle_advanced_to, held)
        if not mark.may_run:
            return StagePass([], 0, [], False, None)
        if mark.advance and advance is not None:
            await advance(conn, mark.advance)
        limit = mark.limit
        if limit is not None:
            query = query.where(t.department_facts.c.at < limit)
    rows = (await conn.execute(query.limit(STAGE_PASS_LIMIT))).all()
    if len(rows) == STAGE_PASS_LIMIT:  # more facts remain: messages after the last applied fact wait for them
        limit = rows[-1].at if limit is None else min(limit, rows[-1].at)
    if not rows:
        return StagePass([], 0, [], True, limit)
    facts = [_fact(row) for row in rows]
    pairs = sorted({(f.department, f.root_cause.value) for f in facts})
    state = DepartmentState()
    for chunk in _chunks(pairs):
        pair_columns = (t.department_open.c.department, t.department_open.c.root_cause)
        for row in await conn.execute(select(t.department_open).where(among_rows(conn, pair_columns, chunk))):
            fact = DepartmentFact(
                row.department, RootCause(row.root_cause), row.pattern_id, row.provider_npi, True, row.at, row.snapshot
            )
            state.open.setdefault((row.department, fact.root_cause), {})[row.pattern_id] = fact
    systemic = {systemic_id(d, RootCause(rc)): (d, RootCause(rc)) for d, rc in pairs}
    for chunk in _chunks(sorted(systemic)):
        found = await conn.execute(
            select(t.escalations.c.escalation_id).where(among(conn, t.escalations.c.escalation_id, chunk))
        )
        state.escalated.update(systemic[escalation_id] for (escalation_id,) in found)

    escalations = [message for fact in facts for message in stage.apply(fact, state)]

    for department, root_cause in sorted(state.changed):
        await conn.execute(
            delete(t.department_open).where(
                t.department_open.c.department == department, t.department_open.c.root_cause == root_cause.value
            )
        )
        await _insert_new(
            conn,
            t.department_open,
            [
                {
                    "department": f.department,
                    "root_cause": f.root_cause.value,
                    "pattern_id": f.pattern_id,
                    "provider_npi": f.provider_npi,
                    "at": f.at,
                    "snapshot": f.snapshot,
                }
                for f in state.open.get((department, root_cause), {}).values()
            ],
        )
    await _insert_new(conn, t.escalations, [_escalation_row(e) for e in escalations])
    for chunk in _chunks([row.seq for row in rows]):
        await conn.execute(delete(t.department_facts).where(among(conn, t.department_facts.c.seq, chunk)))
    latest = max(f.at for f in facts)
    if stage_clock.clock is None or latest > stage_clock.clock:
        await save_clock(conn, latest, stage_clock.last_event_wall_at)
    closed = [(at, department, root_cause.value) for at, (department, root_cause) in state.closed]
    return StagePass(escalations, len(rows), closed, True, limit)


async def phi_key(database: AsyncEngine, warn: bool = True) -> str:
    """The store's PHI hash key, made at random by whichever replica asks first (insert-if-absent); says so
    as a warning (`warn`) or, for a store made for one replay, at info level."""
    import logging
    import secrets
    from datetime import UTC

    async with database.begin() as conn:
        query = select(t.engine_secrets.c.value).where(t.engine_secrets.c.name == "phi_hash_key")
        key = await conn.scalar(query)
        if key is None:
            made = {"name": "phi_hash_key", "value": secrets.token_hex(32), "created_at": datetime.now(UTC)}
            await _insert_new(conn, t.engine_secrets, [made])
            key = await conn.scalar(query)
            logging.getLogger("docloop.store").log(
                logging.WARNING if warn else logging.INFO,
                "DOCLOOP_PHI_HASH_KEY is unset: made a random key and kept it in the store (engine_secrets); "
                "production should manage its own key",
            )
    assert key is not None
    return str(key)


async def append_outbox(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Insert in order; a message id already there (a batch applied twice) is skipped, never duplicated."""
    await _insert_new(
        conn,
        t.outbox,
        [
            {
                "message_id": r.message_id,
                "stream": r.stream,
                "key": r.key,
                "value": r.value,
                "reason": r.reason,
                "created_at": r.created_at,
                "published_at": None,
            }
            for r in rows
        ],
    )
