"""/readyz under a burst of probes, serve with the database down at start, no password in any output
(issue #10, "Small ones" and "PHI and secrets")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from engine.serve import Service
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


async def test_a_burst_of_probes_shares_one_check(sqlite_url: str) -> None:
    service = Service(Settings(database_url=sqlite_url, readiness_cache_seconds=60))
    runs = 0

    async def checks() -> dict[str, str]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)  # a check that takes a while: concurrent probes must wait for it, not repeat it
        return {"database": "ok", "kafka": "ok"}

    service.readiness_checks = checks  # type: ignore[method-assign]
    answers = await asyncio.gather(*(service.readyz() for _ in range(200)))
    await service.database.dispose()
    assert runs == 1
    assert {a.status for a in answers} == {200}
    body = json.loads(answers[0].body)
    assert body == {"ready": True, "checks": {"database": "ok", "kafka": "ok", "relay": "ok"}}


async def test_the_checks_run_again_after_the_cache_period(sqlite_url: str) -> None:
    service = Service(Settings(database_url=sqlite_url, readiness_cache_seconds=0))
    results = iter([{"database": "ok", "kafka": "ok"}, {"database": "failed: OSError", "kafka": "ok"}])

    async def checks() -> dict[str, str]:
        return next(results)

    service.readiness_checks = checks  # type: ignore[method-assign]
    first, second = await service.readyz(), await service.readyz()
    await service.database.dispose()
    assert (first.status, second.status) == (200, 503)


def test_serve_with_the_database_down_at_start_retries_in_json_then_exits_3(tmp_path: Path) -> None:
    env = {
        "DOCLOOP_DATABASE_URL": "postgresql+asyncpg://docloop:s3cret-pw@127.0.0.1:9/docloop",  # nothing listens
        "DOCLOOP_START_TIMEOUT_SECONDS": "3",
        "DOCLOOP_HTTP_PORT": "0",
        "PATH": "/usr/bin:/bin",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 3
    assert "Traceback" not in output and "s3cret-pw" not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    retries = [line for line in lines if line["msg"] == "database unreachable at start; retrying"]
    assert len(retries) >= 2 and lines[-1]["msg"] == "database unreachable at start; giving up"
    assert time.monotonic() - started < 30


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
