"""Running the `docloop` command line from tests, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def report_json(store: Path) -> dict[str, Any]:
    """`docloop report --format json` over the SQLite store at `store`."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "report",
            "--format",
            "json",
            "--database-url",
            f"sqlite+aiosqlite:///{store}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(run.stdout)
    return result
