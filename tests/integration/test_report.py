"""`docloop report --format html` over replayed stores: the page says what the JSON says, and needs no network."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from engine.report import DailyCounts
from tests.support.events import claim, note, npi
from tests.support.scenario import PATEL, RIVERA

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "engine" / "examples" / "scenario.jsonl"
SVG_NS = "http://www.w3.org/2000/svg"
HEADINGS = [
    "Open patterns by root cause and department",
    "Dollars at risk in open patterns",
    "Cases per week, before and after feedback",
    "Escalations over time",
    "Loop effect: denials per 100 signed notes",
    "All patterns",
]


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout


def url(store: Path) -> str:
    return f"sqlite+aiosqlite:///{store / 'docloop.db'}"


def html_report(store: Path) -> str:
    out = store / "report.html"
    cli("report", "--database-url", url(store), "--format", "html", "--out", str(out))
    return out.read_text(encoding="utf-8")


def json_report(store: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli("report", "--database-url", url(store), "--format", "json"))
    return data


def charts(page: str) -> dict[str, str]:
    """Each inline SVG chart by its data-chart name."""
    return dict(re.findall(r'<svg [^>]*data-chart="([^"]+)"[^>]*>(.*?)</svg>', page, flags=re.DOTALL))


def bars(svg: str) -> int:
    return svg.count('<rect class="bar"')


def section(page: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', page, flags=re.DOTALL)
    assert match, key
    return match.group(1)


class Page(HTMLParser):
    """Collects table rows as cell texts, and checks that every element that opens also closes, in order."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1] if self.open else 'nothing'}")
            return
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def scenario_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    cli("replay", str(SCENARIO), "--out", str(out), "--partitions", "1")
    return out


@pytest.fixture(scope="module")
def page(scenario_store: Path) -> str:
    return html_report(scenario_store)


@pytest.fixture(scope="module")
def report(scenario_store: Path) -> dict[str, Any]:
    return json_report(scenario_store)


def test_the_page_has_a_heading_for_every_section(page: str) -> None:
    assert re.findall(r"<h2>(.*?)</h2>", page) == HEADINGS
    assert page.lstrip().startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_the_page_is_well_formed_and_needs_no_network(page: str) -> None:
    assert parse(page).problems == []
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) == {SVG_NS}
    for fetching in ("<script src", "<link", "<img", "<iframe", "@import", "url("):
        assert fetching not in page


def test_bar_charts_draw_one_bar_per_root_cause_and_department(page: str, report: dict[str, Any]) -> None:
    drawn = charts(page)
    # Dormant patterns (CHEN, OKAFOR, NGUYEN: no visits to judge by), the withdrawn one (WALSH) and undercoding
    # (KIM) are not open denial patterns: RIVERA's (reopened by a recurrence) and GARCIA's remain.
    assert [r["root_cause"] for r in report["open_by_root_cause"]] == [
        "em_level_unsupported",
        "diagnosis_mismatch",
    ]
    for name in ("open-by-root-cause", "at-risk-by-root-cause"):
        assert bars(drawn[name]) == 2
        assert ">em_level_unsupported<" in drawn[name] and ">diagnosis_mismatch<" in drawn[name]
    for name in ("open-by-department", "at-risk-by-department"):
        assert bars(drawn[name]) == 2
        assert ">Internal Medicine<" in drawn[name] and ">Cardiology<" in drawn[name]
    assert ">$1,665.00<" in drawn["at-risk-by-department"]  # Internal Medicine: RIVERA's nine cases


def test_each_pattern_gets_a_weekly_panel_with_its_feedback_marked(page: str, report: dict[str, Any]) -> None:
    drawn = charts(page)
    assert len(report["weekly_cases"]) == 7  # every pattern but the withdrawn one and undercoding
    for series in report["weekly_cases"]:
        svg = drawn[f"weekly-cases-{series['pattern_id']}"]
        assert bars(svg) == len(series["weeks"])
        assert svg.count('class="marker"') == 1
    rivera = next(p for p in report["patterns"] if p["provider_npi"] == RIVERA)
    weeks = next(s for s in report["weekly_cases"] if s["pattern_id"] == rivera["pattern_id"])["weeks"]
    assert sum(weeks.values()) == rivera["case_count"] == 9
    assert "Showing the" not in section(page, "cases-per-week")  # seven patterns: no cap


def test_escalations_are_stacked_by_week_and_reason(page: str, report: dict[str, Any]) -> None:
    by_week = report["escalations_by_week"]
    assert [w["week"] for w in by_week][:2] == ["2026-02-23", "2026-03-02"]
    assert by_week[1]["by_reason"] == {"amount_at_risk": 1, "unacknowledged": 1}
    assert sum(w["total"] for w in by_week) == report["totals"]["escalations"] == 12
    segments = sum(len(w["by_reason"]) for w in by_week)
    assert segments == 9
    assert bars(charts(page)["escalations-by-week"]) == segments
    legend = section(page, "escalations")
    for reason, count in report["totals"]["escalations_by_reason"].items():
        assert f"{reason} ({count})" in legend


def test_the_page_numbers_agree_with_the_json_report(page: str, report: dict[str, Any]) -> None:
    totals = report["totals"]
    kpis = {
        label: value
        for value, label in re.findall(r'<div class="value">(.*?)</div><div class="label">(.*?)</div>', page)
    }
    assert (
        kpis.items()
        >= {
            "Open patterns": str(totals["open"]),
            "Resolved patterns": str(totals["resolved"]),
            "Open amount at risk": "$1,785.00",
            "Escalations": str(totals["escalations"]),
        }.items()
    )
    assert totals["amount_at_risk_open"] == "1785.00"
    table = parse(section(page, "patterns")).rows
    assert table[0][:9] == [
        "Status",
        "Department",
        "Root cause",
        "Provider NPI",
        "Code",
        "Cases",
        "After feedback",
        "At risk",
        "Acknowledged",
    ]
    expected = [
        [
            p["status"],
            p["department"],
            p["root_cause"],
            p["provider_npi"],
            p["procedure_code"],
            str(p["case_count"]),
            str(p["post_feedback_cases"]),
            f"${Decimal(p['amount_at_risk']):,.2f}",
            "yes" if p["acknowledged"] else "no",
        ]
        for p in report["patterns"]
    ]
    assert [row[:9] for row in table[1:]] == expected


def test_the_loop_effect_of_rivera_is_computed_as_defined(page: str, report: dict[str, Any]) -> None:
    """RIVERA's 99215 pattern opened on 2026-02-16. Before it: cases on Jan 5, 12, 19 and Feb 10 (4) and notes
    on Jan 5 and 12 (2): 200.0 per 100 notes. After it, to the clock (June 15): cases on Feb 20, 27, Mar 5 and 10
    (4) and one note (Mar 26): 400.0. PATEL's records_missing pattern has no notes before feedback (n/a) and three
    compliant notes after it with no case: 0.0. Every other pattern has no notes after feedback, so RIVERA's is
    the only pattern in the overall comparison."""
    effect = report["effect_by_pattern"]
    rivera_id = next(p["pattern_id"] for p in report["patterns"] if p["provider_npi"] == RIVERA)
    rivera = next(r for r in effect["patterns"] if r["pattern_id"] == rivera_id)
    assert rivera == {
        "pattern_id": rivera_id,
        "feedback_date": "2026-02-16",
        "before_from": "2026-01-05",
        "before_cases": 4,
        "before_notes": 2,
        "after_until": "2026-06-15",
        "after_cases": 5,
        "after_notes": 1,
        "before_per_100_notes": 200.0,
        "after_per_100_notes": 500.0,
    }
    patel_id = next(p["pattern_id"] for p in report["patterns"] if p["provider_npi"] == PATEL)
    patel = next(r for r in effect["patterns"] if r["pattern_id"] == patel_id)
    assert (patel["before_per_100_notes"], patel["after_notes"], patel["after_per_100_notes"]) == (None, 3, 0.0)
    assert patel["after_until"] == "2026-05-01"  # resolved (its last March note 45 days old): the episode ends
    assert effect["overall"] == {
        "patterns_compared": 1,
        "before_cases": 4,
        "before_notes": 2,
        "after_cases": 5,
        "after_notes": 1,
        "before_per_100_notes": 200.0,
        "after_per_100_notes": 500.0,
    }

    shown = section(page, "loop-effect")
    assert "Definition." in shown and "n/a" in shown
    rows = {row[0]: row for row in parse(shown).rows}
    assert rows["Overall"][2:] == ["4", "2", "200.0", "5", "1", "500.0"]
    assert rows[f"em_level_unsupported · 99215 · NPI {RIVERA}"][1:] == [
        "2026-02-16",
        "4",
        "2",
        "200.0",
        "5",
        "1",
        "500.0",
    ]
    assert rows[f"records_missing · 99213 · NPI {PATEL}"][4:] == ["n/a", "0", "3", "0.0"]
    # Bars only for the rates that exist: overall (2), RIVERA (2), PATEL's "after" (1).
    assert bars(charts(page)["effect-per-pattern"]) == 5


def test_the_feedback_day_and_the_days_before_the_first_case_count_in_neither_span(tmp_path: Path) -> None:
    """One provider, feedback on 2026-02-16 (the third denial). Before: cases Jan 5-7 (3) and the notes of Jan 5-8
    (4; the note of Jan 2 predates the first case). On the feedback day itself: a case and a note, in neither
    span. After: the case of Feb 20 (1) and the notes of Feb 20 and 23 (2). So 75.0 before and 50.0 after."""
    provider = npi("111111111")

    def visit_note(day: str) -> dict[str, object]:
        return note(f"n-{day}", signed_at=f"{day}T18:00:00Z", service_date=day, provider=provider)

    def denial(day: str, denied: str) -> dict[str, object]:
        return claim(
            f"d-{day}",
            occurred_at=f"{denied}T09:00:00Z",
            service_date=day,
            provider=provider,
            adjustments=[("CO", "150", "210.00")],
            remarks=["M25"],
        )

    events = [
        visit_note("2026-01-02"),
        *(visit_note(f"2026-01-0{d}") for d in (5, 6, 7, 8)),
        denial("2026-01-05", "2026-02-02"),
        denial("2026-01-06", "2026-02-09"),
        denial("2026-01-07", "2026-02-16"),
        visit_note("2026-02-16"),
        visit_note("2026-02-20"),
        visit_note("2026-02-23"),
        denial("2026-02-16", "2026-03-10"),
        denial("2026-02-20", "2026-03-12"),
    ]
    stream = tmp_path / "events.jsonl"
    stream.write_text("".join(json.dumps(e) + "\n" for e in events))
    store = tmp_path / "store"
    cli("replay", str(stream), "--out", str(store))
    report = json_report(store)

    (pattern,) = report["patterns"]
    assert (pattern["feedback_date"], pattern["case_count"], pattern["post_feedback_cases"]) == ("2026-02-16", 5, 1)
    (effect,) = report["effect_by_pattern"]["patterns"]
    assert {k: v for k, v in effect.items() if k != "pattern_id"} == {
        "feedback_date": "2026-02-16",
        "before_from": "2026-01-05",
        "before_cases": 3,
        "before_notes": 4,
        "after_until": "2026-03-12",
        "after_cases": 1,
        "after_notes": 2,
        "before_per_100_notes": 75.0,
        "after_per_100_notes": 50.0,
    }
    # One provider is no basis for an effect: the text says so instead of a number.
    assert "clinical (headline): too few data" in cli("report", "--database-url", url(store))


def test_the_text_report_ends_with_the_loop_effect(scenario_store: Path) -> None:
    text = cli("report", "--database-url", url(scenario_store))
    assert "Effect of feedback (difference-in-differences" in text
    assert "clinical (headline): too few data" in text and "administrative: too few data" in text
    assert "Undercoding (apart from denials): 1 patterns, 3 notes, $120.00 estimated left unbilled" in text


def test_the_page_carries_no_patient_identifiers(page: str, scenario_store: Path) -> None:
    with sqlite3.connect(scenario_store / "docloop.db") as db:
        hashes = {h for (h,) in db.execute("SELECT patient_hash FROM cases UNION SELECT patient_hash FROM notes") if h}
    assert hashes
    assert not any(h in page for h in hashes)
    assert "MRN-" not in page and "patient_hash" not in page


def test_an_empty_store_renders_a_page_that_says_so(tmp_path: Path) -> None:
    cli("db", "upgrade", "--database-url", url(tmp_path))
    page = html_report(tmp_path)
    assert re.findall(r"<h2>(.*?)</h2>", page) == HEADINGS
    assert "No open patterns." in page and "No escalations." in page
    assert parse(page).problems == []
    assert json_report(tmp_path)["effect_by_pattern"]["overall"]["before_per_100_notes"] is None


def test_a_larger_simulated_store_renders_a_compact_well_formed_page(tmp_path: Path) -> None:
    events = tmp_path / "simulated.jsonl"
    subprocess.run(
        [sys.executable, "-m", "engine.simulate", "--seed", "3", "--providers", "12", "--days", "60"]
        + ["--out", str(events)],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    store = tmp_path / "store"
    cli("replay", str(events), "--out", str(store))
    page = html_report(store)
    report = json_report(store)

    assert len(page.encode("utf-8")) < 5_000_000
    assert parse(page).problems == []
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) == {SVG_NS}
    reported = report["totals"]["patterns"]
    assert reported > 24
    drawn = charts(page)
    assert sum(name.startswith("weekly-cases-") for name in drawn) == 24
    assert f"Showing the 24 patterns with the most cases, of {len(report['weekly_cases'])}" in page
    assert bars(drawn["open-by-root-cause"]) == len(report["open_by_root_cause"])
    assert bars(drawn["escalations-by-week"]) == sum(len(w["by_reason"]) for w in report["escalations_by_week"])
    assert len(parse(section(page, "patterns")).rows) == reported + 1
    assert f"${Decimal(report['totals']['amount_at_risk_open']):,.2f}" in page


def test_daily_counts_sum_both_ends_of_a_span() -> None:
    counts = DailyCounts([(date(2026, 1, 5), 2), (date(2026, 1, 7), 1), (date(2026, 1, 9), 4)])
    assert counts.between(date(2026, 1, 5), date(2026, 1, 9)) == 7
    assert counts.between(date(2026, 1, 6), date(2026, 1, 8)) == 1
    assert counts.between(date(2026, 1, 10), date(2026, 1, 1)) == 0
    assert DailyCounts().between(date(2026, 1, 1), date(2026, 12, 31)) == 0
