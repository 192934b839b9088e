"""The department stage: rules across providers, keyed by (department, root cause).

Provider tasks each have their own event-time clock, so a cross-provider rule cannot run inside one of them
without depending on which task got there first. Instead every task records a `DepartmentFact` when a
pattern opens or closes, and this stage applies the facts in event-time order (ties by pattern id) once every
task's clock has passed them (the watermark): the same facts in the same order, whatever the interleaving.

Pure: the caller loads the open patterns of the pairs the facts name and stores what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from engine.domain import ids
from engine.domain.messages import Composer
from engine.domain.model import DepartmentFact, EvidenceRef, Pattern
from schemas import EscalationRaised, RootCause

Pair = tuple[str, RootCause]


def systemic_id(department: str, root_cause: RootCause) -> str:
    return ids.escalation_id(f"systemic|{department}|{root_cause.value}", 2, "systemic")


@dataclass
class DepartmentState:
    """Open patterns per pair (pattern id -> the fact that opened it), and the pairs already escalated."""

    open: dict[Pair, dict[str, DepartmentFact]] = field(default_factory=dict)
    escalated: set[Pair] = field(default_factory=set)
    changed: set[Pair] = field(default_factory=set)
    # Pairs whose systemic escalation ended (no open pattern left), with when: the routing stage then stops
    # holding the pair's per-provider escalations.
    closed: list[tuple[datetime, Pair]] = field(default_factory=list)


class DepartmentStage:
    def __init__(self, systemic_providers: int, compose: Composer) -> None:
        self.systemic_providers = systemic_providers
        self.compose = compose

    def apply(self, fact: DepartmentFact, state: DepartmentState) -> list[EscalationRaised]:
        pair = (fact.department, fact.root_cause)
        open_here = state.open.setdefault(pair, {})
        state.changed.add(pair)
        if not fact.opened:
            if open_here.pop(fact.pattern_id, None) is not None and not open_here and pair in state.escalated:
                state.closed.append((fact.at, pair))
            return []
        open_here[fact.pattern_id] = fact
        providers = {f.provider_npi for f in open_here.values()}
        if pair in state.escalated or len(providers) < self.systemic_providers:
            return []
        # Raised once per (department, root cause), ever (README, "Decisions").
        state.escalated.add(pair)
        patterns = [_pattern(f) for f in sorted(open_here.values(), key=lambda f: f.pattern_id)]
        return [self.compose.escalation(2, "systemic", patterns, fact.department, fact.root_cause, fact.at)]


def _pattern(fact: DepartmentFact) -> Pattern:
    """The pattern as the fact saw it: what an escalation's facts need."""
    s = fact.snapshot
    opened = s.get("opened_at")
    return Pattern(
        pattern_id=fact.pattern_id,
        provider_npi=fact.provider_npi,
        root_cause=fact.root_cause,
        procedure_code="",
        episode=0,
        department=fact.department,
        case_count=int(s.get("case_count") or 0),
        post_feedback_cases=int(s.get("post_feedback_cases") or 0),
        amount_at_risk=Decimal(str(s.get("amount_at_risk") or "0.00")),
        opened_at=datetime.fromisoformat(opened) if isinstance(opened, str) else None,
        provider_name=str(s["provider_name"]) if s.get("provider_name") else None,
        # Only the payers reach the escalation (a silence for a payer outage matches by them).
        evidence=[EvidenceRef("", "", date.min, payer) for payer in str(s.get("payer_ids") or "").split(",") if payer],
    )
