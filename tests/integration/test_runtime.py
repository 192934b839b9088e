"""serve and replay run with the garbage collector's thresholds of engine/runtime.py."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main
from engine.runtime import GC_THRESHOLDS
from engine.serve import run_service
from engine.settings import Settings
from tests.support.events import claim, npi


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # run_service sets up its own logging
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_serve_collects_garbage_less_often_than_pythons_default(default_thresholds: None) -> None:
    assert run_service(Settings(database_url="nonsense://here")) == 2  # stops at the URL, after setting them
    assert gc.get_threshold() == GC_THRESHOLDS


def test_replay_collects_garbage_less_often_than_pythons_default(default_thresholds: None, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    denied = claim("c-1", occurred_at="2026-02-20T09:00:00Z", service_date="2026-02-01", provider=npi("100000001"))
    events.write_text(json.dumps(denied) + "\n")
    assert main(["replay", str(events), "--out", str(tmp_path / "out")]) == 0
    assert gc.get_threshold() == GC_THRESHOLDS
