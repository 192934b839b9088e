"""The command line as a newcomer meets it: every mistake ends with one line naming the problem on stderr and a
documented exit code (README: 2 input, 3 unreachable, 4 nothing to work with), never a traceback or a password."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import reset_postgres

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "engine" / "examples" / "scenario.jsonl"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def docloop(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCLOOP_")}
    environment["PYTHONPATH"] = str(ROOT)
    # A configured key, as in production: without one the store makes a key and says so on stderr.
    environment["DOCLOOP_PHI_HASH_KEY"] = "cli-test-key"
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fails(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The run exited with `code` and said one line on stderr, naming the problem with `words`."""
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_replay_of_a_missing_file_a_folder_or_into_an_existing_file(tmp_path: Path) -> None:
    fails(docloop("replay", "nope.jsonl", "--out", "out", cwd=tmp_path), 2, "nope.jsonl", "no such file")
    fails(docloop("replay", str(tmp_path), "--out", "out", cwd=tmp_path), 2, "is a folder")
    (tmp_path / "taken").write_text("x")
    fails(docloop("replay", str(SCENARIO), "--out", "taken", cwd=tmp_path), 2, "--out taken", "not a folder")


def test_a_replay_where_every_line_is_rejected_fails_and_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("not json\n\n{}\n")
    fails(docloop("replay", "bad.jsonl", "--out", "out", cwd=tmp_path), 4, "every one of the 2 lines was rejected")
    entries = [json.loads(line) for line in (tmp_path / "out" / "dlq.jsonl").read_text().splitlines()]
    assert [e["source"] for e in entries] == ["bad.jsonl:1", "bad.jsonl:3"]


def test_replay_with_a_partition_count_the_store_was_not_made_for(tmp_path: Path) -> None:
    fails(docloop("replay", str(SCENARIO), "--out", "out", "--partitions", "0", cwd=tmp_path), 2, "1 or more")
    url = f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"
    first = docloop("replay", str(SCENARIO), "--out", "one", "--database-url", url, "--partitions", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = docloop("replay", str(SCENARIO), "--out", "two", "--database-url", url, "--partitions", "3", cwd=tmp_path)
    fails(again, 2, "computed for 2 partitions", "--partitions 2")


def test_report_on_a_missing_or_empty_store_creates_nothing(tmp_path: Path) -> None:
    fails(docloop("report", cwd=tmp_path), 4, "no Docloop store", "docloop.db")
    assert not (tmp_path / "docloop.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    fails(
        docloop("report", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", cwd=tmp_path),
        4,
        "no tables",
    )


def test_bad_database_urls_are_named_without_their_password(tmp_path: Path) -> None:
    fails(docloop("db", "upgrade", "--database-url", "notaurl", cwd=tmp_path), 2, "not a database URL")
    line = fails(
        docloop("db", "upgrade", "--database-url", "mysql+nodriver://u:hunter2@h/d", cwd=tmp_path), 2, "mysql+nodriver"
    )
    assert "hunter2" not in line and "***" in line
    line = fails(docloop("db", "upgrade", "--database-url", "mongodb://u:hunter2@h/d", cwd=tmp_path), 2, "mongodb")
    assert "hunter2" not in line and "***" in line
    unreachable = f"postgresql+asyncpg://docloop:hunter2@127.0.0.1:{closed_port()}/docloop"
    line = fails(docloop("db", "upgrade", "--database-url", unreachable, cwd=tmp_path), 3, "cannot reach")
    assert "hunter2" not in line


def test_outputs_into_a_missing_folder(tmp_path: Path) -> None:
    fails(docloop("simulate", "--out", "missing/events.jsonl", cwd=tmp_path), 2, "folder missing does not exist")
    fails(docloop("settings", "--write", "missing/README.md", cwd=tmp_path), 2, "no such file")
    replayed = docloop("replay", str(SCENARIO), "--out", "out", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    url = f"sqlite+aiosqlite:///{tmp_path / 'out' / 'docloop.db'}"
    fails(docloop("report", "--database-url", url, "--out", "missing/r.html", cwd=tmp_path), 2, "folder missing")

    fails(docloop("report", "--database-url", url, "--limit", "-1", cwd=tmp_path), 2, "--limit", "0 or more")
    everything = docloop("report", "--database-url", url, "--limit", "0", cwd=tmp_path)
    top_two = docloop("report", "--database-url", url, "--limit", "2", cwd=tmp_path)
    assert everything.returncode == top_two.returncode == 0
    assert "(top 2 of" in top_two.stdout and "(top " not in everything.stdout


async def test_replay_into_postgresql_prints_the_store_url_without_its_password(tmp_path: Path) -> None:
    url = os.environ.get("DOCLOOP_TEST_DATABASE_URL") or pytest.skip("DOCLOOP_TEST_DATABASE_URL is not set")
    await reset_postgres(url)  # a store partitioned for another count would be refused (exit 2)
    done = docloop("replay", str(SCENARIO), "--out", "out", "--database-url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    password = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    store_line = next(line for line in done.stdout.splitlines() if "store:" in line)
    assert "***" in store_line and f":{password}@" not in done.stdout + done.stderr


def test_serve_gives_up_on_an_unreachable_database_with_json_lines_and_code_3(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://docloop:hunter2@127.0.0.1:{closed_port()}/docloop"
    done = docloop(
        "serve", cwd=tmp_path, DOCLOOP_DATABASE_URL=url, DOCLOOP_START_TIMEOUT_SECONDS="2", DOCLOOP_HTTP_PORT="0"
    )
    assert done.returncode == 3 and "Traceback" not in done.stderr and "hunter2" not in done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every line a JSON object
    retries = [e for e in entries if e["msg"] == "store unavailable at start; retrying"]
    assert len(retries) >= 2 and retries[0]["retry_in_s"] < retries[1]["retry_in_s"]  # backing off
    assert entries[-1]["level"] == "error" and "giving up" in entries[-1]["msg"]
    assert "***" in entries[-1]["database"]


def test_demo_without_kafka(tmp_path: Path) -> None:
    done = docloop("demo", "--out", "demo", cwd=tmp_path, DOCLOOP_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}")
    fails(done, 3, "Kafka")


def test_version_and_an_example_in_every_help(tmp_path: Path) -> None:
    done = docloop("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("docloop ")
    for command in (
        ["replay"],
        ["report"],
        ["serve"],
        ["settings"],
        ["db"],
        ["db", "upgrade"],
        ["schemas", "export"],
        ["simulate"],
        ["ingest"],
        ["ingest", "x12"],
        ["ingest", "fhir"],
        ["demo"],
    ):
        shown = docloop(*command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "examples:\n  docloop" in shown.stdout.replace("  DOCLOOP", "  docloop"), (
            command
        )


def test_report_on_a_store_of_an_older_schema_says_to_upgrade(tmp_path: Path) -> None:
    from engine.store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0005")
    fails(docloop("report", "--database-url", url, cwd=tmp_path), 2, "schema 0005", "docloop db upgrade")
