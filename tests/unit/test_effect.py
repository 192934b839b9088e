"""engine/effect.py on small hand-made counts: notes counted once, groups apart, "too few data" when so."""

from __future__ import annotations

from datetime import date, timedelta

from engine.effect import PatternFacts, estimate_effect

FEEDBACK = date(2026, 3, 2)
CLOCK = date(2026, 9, 1)


def days(first: date, count: int, per_day: int = 1) -> list[tuple[date, int]]:
    return [(first + timedelta(days=i), per_day) for i in range(count)]


def world(providers: int, learn: bool) -> tuple[list[PatternFacts], dict, dict]:  # type: ignore[type-arg]
    patterns, cases, notes = [], {}, {}
    for i in range(providers):
        npi = f"P{i}"
        patterns.append(PatternFacts(npi, "records_missing", "99213", FEEDBACK, True))
        notes[(npi, "99213")] = days(FEEDBACK - timedelta(days=56), 113, per_day=4)
        before = days(FEEDBACK - timedelta(days=56), 56)  # a case a day before feedback
        after = days(FEEDBACK + timedelta(days=1), 56)[:: 5 if learn else 1]
        cases[(npi, "records_missing", "99213")] = before + after
    for i in range(providers):  # never told anything: the comparison
        notes[(f"C{i}", "99213")] = days(FEEDBACK - timedelta(days=56), 113, per_day=4)
        cases[(f"C{i}", "records_missing", "99213")] = days(FEEDBACK - timedelta(days=56), 113)[::10]
    return patterns, cases, notes


def test_a_clear_drop_against_a_steady_comparison_is_measured_with_its_basis() -> None:
    patterns, cases, notes = world(8, learn=True)
    clinical = estimate_effect(patterns, cases, notes, CLOCK, 45)["clinical"]
    assert clinical["verdict"] == "fewer cases after feedback"
    assert clinical["estimate_per_100_notes"] < -15
    low, high = clinical["interval_95"]
    assert low <= clinical["estimate_per_100_notes"] <= high < 0
    assert (clinical["patterns"], clinical["providers"], clinical["notes"]["treated_before"]) == (8, 8, 8 * 56 * 4)


def test_no_change_reads_no_measurable_effect_and_the_same_data_give_the_same_figure() -> None:
    patterns, cases, notes = world(8, learn=False)
    first = estimate_effect(patterns, cases, notes, CLOCK, 45)
    assert first["clinical"]["verdict"] == "no measurable effect"
    assert estimate_effect(patterns, cases, notes, CLOCK, 45) == first


def test_too_few_units_say_so_instead_of_a_number() -> None:
    patterns, cases, notes = world(2, learn=True)
    clinical = estimate_effect(patterns, cases, notes, CLOCK, 45)["clinical"]
    assert clinical["verdict"] == "too few data" and clinical["estimate_per_100_notes"] is None
    assert clinical["interval_95"] is None


def test_two_patterns_on_one_procedure_count_its_notes_once_and_groups_stay_apart() -> None:
    patterns, cases, notes = world(8, learn=True)
    patterns.append(PatternFacts("P0", "diagnosis_mismatch", "99213", FEEDBACK, True))
    patterns.append(PatternFacts("P1", "eligibility", "99213", FEEDBACK, False))
    effect = estimate_effect(patterns, cases, notes, CLOCK, 45)
    assert effect["clinical"]["units"] == 8 and effect["clinical"]["patterns"] == 9
    assert effect["clinical"]["notes"]["treated_before"] == 8 * 56 * 4  # not 9 x
    assert effect["administrative"]["units"] == 1 and effect["administrative"]["verdict"] == "too few data"


def test_visits_too_recent_for_their_denials_to_have_come_back_are_not_judged() -> None:
    patterns, cases, notes = world(8, learn=True)
    clinical = estimate_effect(patterns, cases, notes, FEEDBACK + timedelta(days=50), 45)["clinical"]
    assert clinical["notes"]["treated_after"] == 8 * 5 * 4  # only visits up to the clock minus the 45-day lag
