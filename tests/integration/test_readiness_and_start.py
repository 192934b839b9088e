"""No password in any output (issue #10, "PHI and secrets"). The burst of /readyz probes is in
tests/unit/test_metrics.py (CachedCheck), serve with the database down at start in test_cli_errors.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_replay_never_prints_the_database_password(tmp_path: Path, store_url: str) -> None:
    events = tmp_path / "one.jsonl"
    events.write_text('{"not": "an event"}\n')
    if "@" not in store_url:
        return  # SQLite: no password to hide
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "replay",
            str(events),
            "--out",
            str(tmp_path / "out"),
            "--database-url",
            store_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert "docloop:docloop@" not in done.stdout + done.stderr
    assert "docloop:***@" in done.stdout
