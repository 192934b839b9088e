"""End to end: a payer's 835 goes through `docloop ingest x12`, then `docloop replay`, and feedback comes out.

Three 99215 visits by one clinician, each denied CO-150 with M25, within 60 days: the engine must open an
em_level_unsupported pattern and tell both the clinician and billing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "ingest"
CLINICIAN_NPI = "1234567893"


def docloop(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_three_em_level_denials_in_an_835_open_a_pattern_for_the_clinician_and_billing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "DOCLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'docloop.db'}",
    }
    events = tmp_path / "events.jsonl"
    out = tmp_path / "out"

    ingested = docloop(
        "ingest",
        "x12",
        str(FIXTURES / "em_level_three_visits.835"),
        "--provider-directory",
        str(FIXTURES / "providers.csv"),
        "--out",
        str(events),
        env=env,
    )
    assert ingested.returncode == 0, ingested.stderr
    assert len(events.read_text().splitlines()) == 3

    replayed = docloop("replay", str(events), "--out", str(out), env=env)
    assert replayed.returncode == 0, replayed.stderr

    notifications = [json.loads(line) for line in (out / "notifications.jsonl").read_text().splitlines()]
    opened = [n for n in notifications if n["kind"] == "pattern_opened"]

    def about_the_pattern(notification: dict[str, Any]) -> bool:
        pattern = notification["pattern"]
        return (
            pattern["provider_npi"] == CLINICIAN_NPI
            and pattern["root_cause"] == "em_level_unsupported"
            and pattern["procedure_code"] == "99215"
            and pattern["case_count"] == 3
        )

    clinician = [n for n in opened if n["audience"] == "clinician"]
    billing = [n for n in opened if n["audience"] == "billing"]
    assert len(clinician) == 1 and about_the_pattern(clinician[0])
    assert clinician[0]["recipient"] == {"type": "provider", "id": CLINICIAN_NPI}
    assert clinician[0]["pattern"]["department"] == "Internal Medicine"  # from the provider directory
    assert len(billing) == 1 and about_the_pattern(billing[0])
    assert {e["claim_id"] for e in billing[0]["evidence"]} == {"VISIT-001", "VISIT-002", "VISIT-003"}
    assert (out / "dlq.jsonl").read_text() == ""  # the engine accepted every ingested event
    for leak in ("MEM1001", "MEM1002", "MEM1003"):  # patient identifiers stay out of notifications
        assert leak not in (out / "notifications.jsonl").read_text()
