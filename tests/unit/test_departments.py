"""The department stage: a systemic escalation once per pair, and its end when the pair has no open pattern."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.domain.departments import DepartmentStage, DepartmentState
from engine.domain.model import DepartmentFact
from engine.domain.rules import Engine
from schemas import RootCause

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
CAUSE = RootCause("em_level_unsupported")


def fact(pattern: str, npi: str, opened: bool, hours: int) -> DepartmentFact:
    snapshot = {"case_count": 3, "amount_at_risk": "300.00", "provider_name": f"Dr. {npi[:3]}"}
    return DepartmentFact("Internal Medicine", CAUSE, pattern, npi, opened, T0 + timedelta(hours=hours), snapshot)


def test_the_systemic_escalation_ends_when_its_last_open_pattern_closes() -> None:
    stage, state = DepartmentStage(3, Engine().compose), DepartmentState()
    raised = []
    for f in [fact("p1", "1111111116", True, 0), fact("p2", "2222222224", True, 1), fact("p3", "3333333332", True, 2)]:
        raised += stage.apply(f, state)
    assert [e.reason for e in raised] == ["systemic"]
    assert stage.apply(fact("p1", "1111111116", False, 3), state) == []
    assert stage.apply(fact("p2", "2222222224", False, 4), state) == []
    assert state.closed == []  # p3 is still open: the systemic escalation stands
    stage.apply(fact("p3", "3333333332", False, 5), state)
    assert state.closed == [(T0 + timedelta(hours=5), ("Internal Medicine", CAUSE))]
    # Raised once per pair, ever: three new patterns do not raise it again (README, "Decisions").
    for f in [fact("p4", "1111111116", True, 6), fact("p5", "2222222224", True, 7), fact("p6", "3333333332", True, 8)]:
        assert stage.apply(f, state) == []


def test_a_pair_never_escalated_has_nothing_to_end() -> None:
    stage, state = DepartmentStage(3, Engine().compose), DepartmentState()
    stage.apply(fact("p1", "1111111116", True, 0), state)
    stage.apply(fact("p1", "1111111116", False, 1), state)
    assert state.closed == []
