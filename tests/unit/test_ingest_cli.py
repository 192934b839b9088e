"""`docloop ingest`: JSONL out, problems on stderr, exit codes, and --publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import engine.ingest.publish
from engine.ingest.cli import main
from schemas import ClaimDenied, decode_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
DIRECTORY = str(FIXTURES / "providers.csv")
THREE_VISITS = str(FIXTURES / "em_level_three_visits.835")


def jsonl(text: str) -> list[Any]:
    return [decode_event(line) for line in text.splitlines()]


def test_x12_events_go_to_stdout_as_jsonl(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ingest", "x12", THREE_VISITS, "--provider-directory", DIRECTORY])

    out, err = capsys.readouterr()
    events = jsonl(out)
    assert status == 0
    assert [(e.claim_id, e.rendering_provider.department) for e in events] == [
        ("VISIT-001", "Internal Medicine"),
        ("VISIT-002", "Internal Medicine"),
        ("VISIT-003", "Internal Medicine"),
    ]
    assert err == "ingest: 3 event(s) from 1 file(s); 0 part(s) with nothing to report; 0 problem(s)\n"


def test_a_bad_file_fails_the_run_but_the_good_file_is_still_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.835"
    bad.write_text(Path(THREE_VISITS).read_text().replace("SVC*HC:99215*210.00*0.00", "SVC*HC:99215*21O.00*0.00", 1))
    out_file = tmp_path / "events.jsonl"

    status = main(["ingest", "x12", THREE_VISITS, str(bad), "--out", str(out_file), "--default-npi", "1234567893"])

    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert len(jsonl(out_file.read_text())) == 5  # 3 from the good file, 2 of 3 from the bad one
    assert err.splitlines()[0] == (
        f"error: {bad}: segment 16 (SVC, SVC02): not a decimal amount; the claim at segment 13 (CLP) was skipped"
    )
    assert "MEM1001" not in err and "VISIT-001" not in err


def test_fhir_files_are_read_with_the_same_options(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ingest", "fhir", str(FIXTURES / "notes.ndjson"), "--default-department", "Clinic"])

    out, _ = capsys.readouterr()
    assert status == 0
    assert [e.author.department for e in jsonl(out)] == ["Clinic", "Clinic", "Clinic"]


def test_claim_and_source_options_reach_the_events(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "ingest",
            "x12",
            THREE_VISITS,
            "--default-npi",
            "1234567893",
            "--claim-id",
            "CLP07",
            "--source",
            "clearinghouse-7",
        ]
    )

    out, _ = capsys.readouterr()
    (first, *_) = jsonl(out)
    assert status == 0
    assert (first.claim_id, first.encounter_id, first.source) == ("PCN-9001", "VISIT-001", "clearinghouse-7")


def test_an_unreadable_provider_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "providers.csv"
    directory.write_text("npi,department\n1234567890,Cardiology\n")

    status = main(["ingest", "x12", THREE_VISITS, "--provider-directory", str(directory)])

    assert status == 2
    assert capsys.readouterr().err == f"docloop ingest: {directory}: row 2: npi is not a valid NPI\n"


@pytest.mark.parametrize("arguments", [["--default-npi", "1234567890"], ["--claim-id", "clp99"]])
def test_bad_options_are_refused_before_reading(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "x12", THREE_VISITS, *arguments])

    assert exit_info.value.code == 2
    assert capsys.readouterr().out == ""


def test_publish_sends_the_good_events_and_writes_nothing_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    published: list[Any] = []

    async def fake_publish(events: list[Any], target: engine.ingest.publish.KafkaTarget) -> int:
        published.extend(events)
        return len(events)

    monkeypatch.setattr(engine.ingest.publish, "publish", fake_publish)
    monkeypatch.setenv("DOCLOOP_KAFKA_BOOTSTRAP", "broker:9092")

    status = main(["ingest", "x12", THREE_VISITS, "--publish", "--provider-directory", DIRECTORY])

    out, err = capsys.readouterr()
    assert status == 0
    assert out == ""
    assert [e.claim_id for e in published if isinstance(e, ClaimDenied)] == ["VISIT-001", "VISIT-002", "VISIT-003"]
    assert "published 3 event(s) to Kafka at broker:9092" in err


def test_a_failed_publish_fails_the_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def unreachable(events: list[Any], target: engine.ingest.publish.KafkaTarget) -> int:
        raise ConnectionError("no broker")

    monkeypatch.setattr(engine.ingest.publish, "publish", unreachable)
    monkeypatch.setenv("DOCLOOP_KAFKA_BOOTSTRAP", "broker:9092")

    status = main(["ingest", "x12", THREE_VISITS, "--publish", "--out", "-", "--default-npi", "1234567893"])

    out, err = capsys.readouterr()
    assert status == 1
    assert len(out.splitlines()) == 3  # --out - still writes what was read
    assert "publishing to Kafka at broker:9092 failed (ConnectionError)" in err


def test_docloop_ingest_is_wired_into_the_main_command(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main as docloop

    status = docloop(["ingest", "x12", THREE_VISITS, "--default-npi", "1234567893"])

    assert status == 0
    assert [json.loads(line)["claim_id"] for line in capsys.readouterr().out.splitlines()] == [
        "VISIT-001",
        "VISIT-002",
        "VISIT-003",
    ]
