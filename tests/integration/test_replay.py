"""`docloop replay` over the shipped scenario: exactly the messages the rules call for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import report_json
from tests.support.scenario import scenario_lines

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "engine" / "examples" / "scenario.jsonl"


def replay(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The scenario is a one-clock story (a small clinic in one task): replayed on one partition.
        [sys.executable, "-m", "engine.cli", "replay", str(SCENARIO), "--out", str(out), "--partitions", "1", *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_shipped_scenario_is_the_one_the_tests_describe() -> None:
    assert SCENARIO.read_text().splitlines() == scenario_lines()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    replay(out)
    return out


def test_replay_produces_every_notification_kind_and_escalation_reason(replayed: Path) -> None:
    notifications = [n for n in read(replayed / "notifications.jsonl") if n["kind"] != "digest"]
    escalations = read(replayed / "escalations.jsonl")
    assert Counter((n["kind"], n["audience"]) for n in notifications) == {
        ("pattern_opened", "clinician"): 8,
        ("pattern_opened", "billing"): 9,
        ("reminder", "clinician"): 6,
        ("reminder", "billing"): 7,
        ("pattern_recurring", "clinician"): 1,
        ("pattern_recurring", "billing"): 1,
        ("pre_bill_alert", "clinician"): 1,
        ("pre_bill_alert", "billing"): 1,
        ("pattern_resolved", "clinician"): 1,
        ("pattern_resolved", "billing"): 2,
        ("pattern_dormant", "billing"): 4,
        ("review_requested", "billing"): 2,
        ("feedback_upheld", "clinician"): 1,
        ("feedback_upheld", "billing"): 1,
        ("feedback_withdrawn", "clinician"): 1,
        ("feedback_withdrawn", "billing"): 1,
    }
    assert Counter((e["level"], e["reason"]) for e in escalations) == {
        (2, "systemic"): 1,
        (1, "unacknowledged"): 7,
        (2, "amount_at_risk"): 1,
        (1, "recurrence_after_feedback"): 1,
        (2, "recurrence_after_feedback"): 1,
        (1, "dispute_unanswered"): 1,
    }


def test_replay_routes_every_message_once(replayed: Path) -> None:
    """Each per-fact message has its delivery; each one marked `digest` is listed in exactly one digest, on
    the notifications topic next to them, sent after it."""
    published = read(replayed / "notifications.jsonl") + read(replayed / "escalations.jsonl")
    digests = [m for m in published if m.get("kind") == "digest"]
    per_fact = {str(m.get("notification_id") or m.get("escalation_id")): m for m in published if m not in digests}
    assert {m["delivery"] for m in per_fact.values()} <= {"send", "digest", "held"}
    listed = Counter(i for d in digests for i in d["covers"])  # type: ignore[attr-defined]
    assert set(listed) == {i for i, m in per_fact.items() if m["delivery"] == "digest"}
    assert set(listed.values()) == {1}
    for d in digests:
        assert d["delivery"] == "send"
        assert all(str(per_fact[i]["created_at"]) <= str(d["created_at"]) for i in d["covers"])  # type: ignore[attr-defined]


def test_replay_sends_bad_lines_to_the_dlq_with_reasons(replayed: Path) -> None:
    dlq = read(replayed / "dlq.jsonl")
    reasons = [str(d["reason"]).split(":")[0] for d in dlq]
    assert reasons == [
        "not JSON",
        "unknown event_type",
        "invalid event",
        "occurred_at in the future",
        "unsupported schema_version",
    ]
    assert all("MRN-" not in str(d["reason"]) for d in dlq)


def test_no_administrative_pattern_reaches_a_clinician(replayed: Path) -> None:
    for n in read(replayed / "notifications.jsonl"):
        if n["audience"] == "clinician" and n["kind"] == "digest":
            assert all(
                p["root_cause"] not in {"eligibility", "authorization_missing", "timely_filing"} for p in n["patterns"]
            )  # type: ignore[attr-defined]
        elif n["audience"] == "clinician":
            assert n["pattern"]["root_cause"] not in {"eligibility", "authorization_missing", "timely_filing"}  # type: ignore[index]


def test_replaying_twice_gives_byte_identical_files(replayed: Path, tmp_path: Path) -> None:
    replay(tmp_path)
    for name in ("notifications.jsonl", "escalations.jsonl", "dlq.jsonl"):
        assert (tmp_path / name).read_bytes() == (replayed / name).read_bytes(), name


def test_on_several_partitions_answers_and_reviews_meet_their_patterns_and_replay_stays_identical(
    replayed: Path, tmp_path: Path
) -> None:
    """Reviews are keyed by the pattern's provider like every inbound topic: on 4 partitions (several tasks)
    every dispute, review and "no change needed" answer still reaches its pattern, and a second replay on the
    same partitioning writes the same bytes."""

    def run(out: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "engine.cli", "replay", str(SCENARIO), "--out", str(out), "--partitions", "4"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )

    run(tmp_path / "a")
    run(tmp_path / "b")
    for name in ("notifications.jsonl", "escalations.jsonl", "dlq.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    answers = ("review_requested", "feedback_upheld", "feedback_withdrawn")

    def answered(folder: Path) -> Counter[tuple[object, object]]:
        return Counter((n["kind"], n["audience"]) for n in read(folder / "notifications.jsonl") if n["kind"] in answers)

    assert answered(tmp_path / "a") == answered(replayed) and sum(answered(replayed).values()) == 6
    totals = report_json(tmp_path / "a" / "docloop.db")["totals"]
    assert (totals["disputes"], totals["disputes_upheld"], totals["alerts_no_change"], totals["withdrawn"]) == (
        2,
        1,
        1,
        1,
    )


def test_replay_prints_a_summary_and_report_reads_the_store(tmp_path: Path) -> None:
    summary = replay(tmp_path).stdout
    assert "rejected to dlq 5" in summary and "duplicates 1" in summary
    data = report_json(tmp_path / "docloop.db")
    totals = data["totals"]
    assert (totals["open"], totals["resolved"], totals["dormant"], totals["withdrawn"]) == (2, 2, 3, 1)
    assert (totals["disputes"], totals["disputes_upheld"], totals["alerts_no_change"]) == (2, 1, 1)
    assert {p["status"] for p in data["patterns"]} == {"open", "dormant", "resolved", "withdrawn"}
    assert (data["undercoding"]["patterns"], data["undercoding"]["unbilled_estimate"]) == (1, "120.00")
    assert data["effect_estimate"]["clinical"]["verdict"] == "too few data"
    assert all(
        set(p)
        >= {
            "pattern_id",
            "provider_npi",
            "root_cause",
            "procedure_code",
            "department",
            "status",
            "case_count",
            "post_feedback_cases",
            "amount_at_risk",
            "acknowledged",
        }
        for p in data["patterns"]
    )


@pytest.mark.postgres
def test_replay_runs_on_postgresql(tmp_path: Path, replayed: Path) -> None:
    import asyncio

    from tests.conftest import postgres_url, reset_postgres

    url = postgres_url()
    asyncio.run(reset_postgres(url))
    replay(tmp_path, "--database-url", url)
    assert (tmp_path / "notifications.jsonl").read_bytes() == (replayed / "notifications.jsonl").read_bytes()


def test_every_rejected_line_is_listed_with_its_file_and_line(replayed: Path) -> None:
    lines = SCENARIO.read_text().splitlines()
    dead = read(replayed / "dlq.jsonl")
    assert dead and all(str(entry["source"]).startswith("scenario.jsonl:") for entry in dead)
    for entry in dead:
        number = int(str(entry["source"]).rsplit(":", 1)[1])
        assert lines[number - 1] == entry["raw"]  # the very line that was rejected
