"""Did feedback change anything? A difference-in-differences a statistician could sign, or "too few data".

Pure: the caller reads the store and passes plain counts in; the same data give the same figure (the bootstrap
draws from a seeded generator).

The unit is a (provider, procedure) that got feedback, within one group: clinical documentation (a clinician was
told) or administrative (only billing was). Its feedback date is that of its first pattern in the group; its
cases are the cases of its patterns' root causes on that procedure; its notes are the provider's notes for that
procedure, each counted once (never once per pattern). Rates are cases per 100 notes by service date:
- before: the `window_days` before the feedback date; after: the `window_days` after it, but only visits at least
  the denial lag before the clock (a younger visit's denial may still be on its way, which would flatter "after");
- comparison: the same root causes on the same procedure among providers who never had a reported pattern of
  them (a provider whose own pattern is near would bring its cluster of cases along), same calendar windows.
Estimate: (treated after - before) - (comparison after - before), pooled over units. Interval: the 2.5th and
97.5th percentiles of the estimate over providers resampled with replacement. The interval containing 0 reads
"no measurable effect".
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, Literal

Group = Literal["clinical", "administrative"]

WINDOW_DAYS = 56
DRAWS = 1000
SEED = 12
# Below these the interval would be noise dressed as a number.
MIN_UNITS = 5
MIN_PROVIDERS = 3
MIN_NOTES = 100  # treated notes before, and after


@dataclass(frozen=True)
class PatternFacts:
    provider_npi: str
    root_cause: str
    procedure_code: str
    feedback_date: date
    clinician_told: bool


class Daily:
    """Counts per day; `between` sums days first..last by binary search over running sums."""

    def __init__(self, counts: Iterable[tuple[date, int]] = ()) -> None:
        pairs = sorted(counts)
        self.days = [day for day, _ in pairs]
        self._running = [0, *accumulate(n for _, n in pairs)]

    def between(self, first: date, last: date) -> int:
        if last < first:
            return 0
        return self._running[bisect_right(self.days, last)] - self._running[bisect_left(self.days, first)]


@dataclass(frozen=True)
class Unit:
    provider_npi: str
    procedure_code: str
    feedback: date
    patterns: int
    counts: tuple[int, int, int, int, int, int, int, int]  # treated cb, nb, ca, na; comparison cb, nb, ca, na


def estimate_effect(
    patterns: Iterable[PatternFacts],
    cases: Mapping[tuple[str, str, str], Iterable[tuple[date, int]]],  # (provider, root cause, code) -> days
    notes: Mapping[tuple[str, str], Iterable[tuple[date, int]]],  # (provider, code) -> days
    clock: date | None,
    denial_lag_days: int,
    window_days: int = WINDOW_DAYS,
    draws: int = DRAWS,
    seed: int = SEED,
) -> dict[str, Any]:
    case_days = {key: Daily(days) for key, days in cases.items()}
    note_days = {key: Daily(days) for key, days in notes.items()}
    facts = list(patterns)
    groups: dict[str, dict[str, Any]] = {}
    for group in ("clinical", "administrative"):
        members = [p for p in facts if p.clinician_told == (group == "clinical")]
        units = _units(members, facts, case_days, note_days, clock, denial_lag_days, window_days)
        groups[group] = _summary(units, draws, seed)
    return {
        "definition": __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        "headline": "clinical",
        "window_days": window_days,
        "denial_lag_days": denial_lag_days,
        **groups,
    }


def _units(
    members: list[PatternFacts],
    everyone: list[PatternFacts],
    case_days: dict[tuple[str, str, str], Daily],
    note_days: dict[tuple[str, str], Daily],
    clock: date | None,
    lag: int,
    window: int,
) -> list[Unit]:
    if clock is None:
        return []
    by_unit: dict[tuple[str, str], list[PatternFacts]] = defaultdict(list)
    for p in members:
        by_unit[(p.provider_npi, p.procedure_code)].append(p)
    fed_back: dict[tuple[str, str], dict[str, date]] = defaultdict(dict)  # (root cause, code) -> provider -> first
    for p in everyone:
        first = fed_back[(p.root_cause, p.procedure_code)].get(p.provider_npi)
        if first is None or p.feedback_date < first:
            fed_back[(p.root_cause, p.procedure_code)][p.provider_npi] = p.feedback_date
    providers_with_notes: dict[str, list[str]] = defaultdict(list)
    for provider, code in sorted(note_days):
        providers_with_notes[code].append(provider)

    units = []
    empty = Daily()
    last_judged = clock - timedelta(days=lag)
    for (provider, code), group in sorted(by_unit.items()):
        feedback = min(p.feedback_date for p in group)
        causes = sorted({p.root_cause for p in group})
        b0, b1 = feedback - timedelta(days=window), feedback - timedelta(days=1)
        a0, a1 = feedback + timedelta(days=1), min(feedback + timedelta(days=window), last_judged)
        if a1 < a0:
            continue  # no visit after the feedback is old enough to judge yet

        def count(who: str, first: date, last: date, code: str = code, causes: list[str] = causes) -> tuple[int, int]:
            cases = sum(case_days.get((who, cause, code), empty).between(first, last) for cause in causes)
            return cases, note_days.get((who, code), empty).between(first, last)

        treated = (*count(provider, b0, b1), *count(provider, a0, a1))
        comparison = [0, 0, 0, 0]
        for other in providers_with_notes[code]:
            if other == provider or any(other in fed_back[(cause, code)] for cause in causes):
                continue
            for i, value in enumerate((*count(other, b0, b1), *count(other, a0, a1))):
                comparison[i] += value
        units.append(Unit(provider, code, feedback, len(group), (*treated, *comparison)))  # type: ignore[arg-type]
    return units


def _did(units: Iterable[Unit]) -> float | None:
    totals = [0] * 8
    for unit in units:
        for i, value in enumerate(unit.counts):
            totals[i] += value
    tcb, tnb, tca, tna, ccb, cnb, cca, cna = totals
    if not (tnb and tna and cnb and cna):
        return None
    return 100 * ((tca / tna - tcb / tnb) - (cca / cna - ccb / cnb))


def _rate(cases: int, notes: int) -> float | None:
    return round(100 * cases / notes, 2) if notes else None


def _summary(units: list[Unit], draws: int, seed: int) -> dict[str, Any]:
    providers = sorted({u.provider_npi for u in units})
    totals = [sum(u.counts[i] for u in units) for i in range(8)]
    figures: dict[str, Any] = {
        "patterns": sum(u.patterns for u in units),
        "units": len(units),
        "providers": len(providers),
        "notes": {"treated_before": totals[1], "treated_after": totals[3], "comparison": totals[5] + totals[7]},
        "treated_per_100_notes": {"before": _rate(totals[0], totals[1]), "after": _rate(totals[2], totals[3])},
        "comparison_per_100_notes": {"before": _rate(totals[4], totals[5]), "after": _rate(totals[6], totals[7])},
    }
    point = _did(units)
    enough = (
        len(units) >= MIN_UNITS
        and len(providers) >= MIN_PROVIDERS
        and min(totals[1], totals[3]) >= MIN_NOTES
        and point is not None
    )
    if not enough:
        return {**figures, "verdict": "too few data", "estimate_per_100_notes": None, "interval_95": None}
    assert point is not None
    by_provider: dict[str, list[Unit]] = defaultdict(list)
    for unit in units:
        by_provider[unit.provider_npi].append(unit)
    rng = random.Random(seed)
    estimates = []
    for _ in range(draws):
        drawn = [unit for provider in rng.choices(providers, k=len(providers)) for unit in by_provider[provider]]
        value = _did(drawn)
        if value is not None:
            estimates.append(value)
    estimates.sort()
    low = estimates[int(0.025 * (len(estimates) - 1))]
    high = estimates[int(0.975 * (len(estimates) - 1))]
    if low <= 0 <= high:
        verdict = "no measurable effect"
    else:
        verdict = "fewer cases after feedback" if high < 0 else "more cases after feedback"
    return {
        **figures,
        "verdict": verdict,
        "estimate_per_100_notes": round(point, 2),
        "interval_95": [round(low, 2), round(high, 2)],
    }
