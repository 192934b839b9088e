"""The engine's working memory: everything the rules read and change while applying events.

The rules see only this class. In unit tests it holds the whole world; in the service it holds the slice
of the store a batch needs (loaded in a few bulk queries) and remembers what changed so the store can
write it back in the same transaction.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from engine.domain.model import Case, DepartmentFact, Note, Pattern, PatternKey, PatternStatus
from schemas import EscalationRaised


@dataclass
class Changes:
    """What applying events changed, for the store to persist."""

    events: dict[str, str] = field(default_factory=dict)  # event_id -> event_type
    cases: dict[str, Case] = field(default_factory=dict)
    patterns: dict[str, Pattern] = field(default_factory=dict)
    notes: dict[str, Note] = field(default_factory=dict)
    notifications: dict[str, str] = field(default_factory=dict)  # notification_id -> pattern_id
    escalations: list[EscalationRaised] = field(default_factory=list)
    facts: list[DepartmentFact] = field(default_factory=list)  # for the department stage


class State:
    def __init__(self, clock: datetime | None = None) -> None:
        self.clock = clock
        self.changes = Changes()
        self._events: set[str] = set()
        self._cases: dict[str, Case] = {}
        self._cases_by_pattern: dict[str, dict[str, Case]] = defaultdict(dict)
        self._cases_by_encounter: dict[str, dict[str, Case]] = defaultdict(dict)
        self._patterns: dict[str, Pattern] = {}
        self._episodes: dict[PatternKey, Pattern] = {}  # the current (latest) episode of each key
        self._timers: list[tuple[datetime, str]] = []  # a heap of (due, pattern_id); stale entries are skipped
        self._pushed: dict[str, datetime] = {}
        self._open_by_provider: dict[str, dict[str, Pattern]] = defaultdict(dict)
        self._notes: dict[str, Note] = {}
        self._notes_by_encounter: dict[str, dict[str, Note]] = defaultdict(dict)
        self._notifications: dict[str, str] = {}
        self._escalations: set[str] = set()
        self.quarantined: list[tuple[str, str]] = []  # (pattern_id, why) quarantined while applying

    # Loading: the store calls these with rows it read; nothing is marked as changed.
    def load_event(self, event_id: str) -> None:
        self._events.add(event_id)

    def load_case(self, case: Case) -> None:
        self._cases[case.case_id] = case
        self._cases_by_pattern[case.pattern_id][case.case_id] = case
        self._cases_by_encounter[case.encounter_id][case.case_id] = case

    def load_pattern(self, pattern: Pattern) -> None:
        self._patterns[pattern.pattern_id] = pattern
        current = self._episodes.get(pattern.key)
        if current is None or current.episode < pattern.episode:
            self._episodes[pattern.key] = pattern
            if current is not None:
                self._index_open(current)
        self._index_timer(pattern)
        self._index_open(pattern)

    def load_note(self, note: Note) -> None:
        self._notes[note.note_id] = note
        self._notes_by_encounter[note.encounter_id][note.note_id] = note

    def load_notification(self, notification_id: str, pattern_id: str) -> None:
        self._notifications[notification_id] = pattern_id

    def load_escalation(self, escalation_id: str) -> None:
        self._escalations.add(escalation_id)

    # Reading.
    def loaded_patterns(self) -> list[Pattern]:
        return list(self._patterns.values())

    def has_event(self, event_id: str) -> bool:
        return event_id in self._events

    def case(self, case_id: str) -> Case | None:
        return self._cases.get(case_id)

    def cases_of_pattern(self, pattern_id: str, first: date, last: date) -> list[Case]:
        return [c for c in self._cases_by_pattern[pattern_id].values() if first <= c.service_date <= last]

    def cases_of_encounter(self, encounter_id: str) -> list[Case]:
        return sorted(self._cases_by_encounter[encounter_id].values(), key=lambda c: c.case_id)

    def note(self, note_id: str) -> Note | None:
        return self._notes.get(note_id)

    def latest_note(self, encounter_id: str) -> Note | None:
        notes = self._notes_by_encounter[encounter_id].values()
        return max(notes, key=lambda n: (n.signed_at, n.note_id), default=None)

    def pattern(self, pattern_id: str) -> Pattern | None:
        return self._patterns.get(pattern_id)

    def current_pattern(self, key: PatternKey) -> Pattern | None:
        return self._episodes.get(key)

    def open_patterns_of_provider(self, provider_npi: str) -> list[Pattern]:
        found = self._open_by_provider.get(provider_npi, {}).values()
        return sorted(found, key=lambda p: (p.root_cause, p.procedure_code))

    def next_due(self, until: datetime) -> Pattern | None:
        """The pattern whose timer is due first at or before `until` (ties broken by id, for determinism)."""
        while self._timers:
            due, pattern_id = self._timers[0]
            pattern = self._patterns[pattern_id]
            if pattern.next_due_at != due:  # rescheduled or done since this entry was pushed
                heapq.heappop(self._timers)
                if self._pushed.get(pattern_id) == due:
                    del self._pushed[pattern_id]
                continue
            return pattern if due <= until else None
        return None

    def pattern_of_notification(self, notification_id: str) -> str | None:
        return self._notifications.get(notification_id)

    def has_escalation(self, escalation_id: str) -> bool:
        return escalation_id in self._escalations

    # Changing: each records the change for the store.
    def record_event(self, event_id: str, event_type: str) -> None:
        self._events.add(event_id)
        self.changes.events[event_id] = event_type

    def save_case(self, case: Case) -> None:
        self.load_case(case)
        self.changes.cases[case.case_id] = case

    def save_pattern(self, pattern: Pattern) -> None:
        self.load_pattern(pattern)
        self.changes.patterns[pattern.pattern_id] = pattern

    def save_note(self, note: Note) -> None:
        self.load_note(note)
        self.changes.notes[note.note_id] = note

    def record_notification(self, notification_id: str, pattern_id: str) -> None:
        self._notifications[notification_id] = pattern_id
        self.changes.notifications[notification_id] = pattern_id

    def record_fact(self, fact: DepartmentFact) -> None:
        self.changes.facts.append(fact)

    def record_escalation(self, escalation: EscalationRaised) -> None:
        self._escalations.add(escalation.escalation_id)
        self.changes.escalations.append(escalation)

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    def _index_open(self, pattern: Pattern) -> None:
        """Watched patterns by provider (open or dormant: a provider's notes still count for them); only a key's
        current episode. (Open patterns by department are the department stage's, engine/domain/departments.py.)"""
        by_provider = self._open_by_provider[pattern.provider_npi]
        current = self._episodes.get(pattern.key) is pattern
        if current and pattern.status in (PatternStatus.OPEN, PatternStatus.DORMANT):
            by_provider[pattern.pattern_id] = pattern
        else:
            by_provider.pop(pattern.pattern_id, None)

    def _index_timer(self, pattern: Pattern) -> None:
        due = pattern.next_due_at
        if due is not None and self._pushed.get(pattern.pattern_id) != due:
            heapq.heappush(self._timers, (due, pattern.pattern_id))
            self._pushed[pattern.pattern_id] = due
