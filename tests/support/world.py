"""An engine over in-memory state, fed with event dicts: the unit tests' view of the rules."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from engine.domain.departments import DepartmentStage, DepartmentState
from engine.domain.model import Pattern, PatternKey
from engine.domain.rules import Engine, Message, Thresholds
from engine.domain.state import State
from schemas import EscalationRaised, FeedbackNotification, RootCause, decode_event


class World:
    """One task and its department stage: with one clock, the stage may apply each fact as soon as it is made."""

    def __init__(self, **thresholds: Any) -> None:
        self.engine = Engine(Thresholds(**thresholds))
        self.state = State()
        self.stage = DepartmentStage(self.engine.t.systemic_providers, self.engine.compose)
        self.departments = DepartmentState()
        self.messages: list[Message] = []
        self._facts_seen = 0

    def send(self, *events: dict[str, Any]) -> list[Message]:
        new: list[Message] = []
        for event in events:
            new += self.engine.process(decode_event(json.dumps(event)), self.state).messages
            new += self._stage()
        self.messages += new
        return new

    def advance(self, to: str) -> list[Message]:
        new: list[Message] = [*self.engine.advance(datetime.fromisoformat(to.replace("Z", "+00:00")), self.state)]
        new += self._stage()
        self.messages += new
        return new

    def _stage(self) -> list[Message]:
        facts = self.state.changes.facts[self._facts_seen :]
        self._facts_seen += len(facts)
        return [m for fact in sorted(facts, key=lambda f: f.order) for m in self.stage.apply(fact, self.departments)]

    def notifications(self, kind: str | None = None, audience: str | None = None) -> list[FeedbackNotification]:
        return [
            m
            for m in self.messages
            if isinstance(m, FeedbackNotification)
            and (kind is None or m.kind == kind)
            and (audience is None or m.audience == audience)
        ]

    def escalations(self, reason: str | None = None, level: int | None = None) -> list[EscalationRaised]:
        return [
            m
            for m in self.messages
            if isinstance(m, EscalationRaised)
            and (reason is None or m.reason == reason)
            and (level is None or m.level == level)
        ]

    def pattern(self, npi: str, root_cause: str = "em_level_unsupported", code: str = "99215") -> Pattern:
        pattern = self.state.current_pattern(PatternKey(npi, RootCause(root_cause), code))
        assert pattern is not None, "no such pattern"
        return pattern
