"""Processor.apply when the store refuses a write: what is tried again, what goes to the DLQ, and that nothing
but StoreUnavailable leaves it (a raw error would lose the records serve's pump had taken)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from engine.consumer import TaskRunner
from engine.service import BatchReport, Processor, RawEvent, StoreUnavailable
from engine.settings import Settings
from engine.tasks import TaskInputs


class StoreError(Exception):
    pass


def processor(monkeypatch: Any, outcomes: list[str]) -> tuple[Processor, list[dict[int, str]]]:
    """A processor whose transactions fail or pass in the given order ('fail' or 'ok'); the store answers."""
    monkeypatch.setattr("engine.service.STORE_RETRY_SECONDS", 0.0)
    p = Processor(Settings(), None)  # type: ignore[arg-type]
    calls: list[dict[int, str]] = []

    async def apply_batch(raws: Any, failed: Any = None, task: int = 0, idle: bool = False) -> Any:
        calls.append(dict(failed or {}))
        if outcomes.pop(0) == "fail":
            raise StoreError("connection reset")
        report = BatchReport()
        report.rejected.update("store error" for _ in failed or {})
        return report, []

    async def store_answers() -> bool:
        return True

    p.apply_batch, p.store_answers = apply_batch, store_answers  # type: ignore[method-assign]
    return p, calls


EVENT = [RawEvent(b"{}", b"k", "claims/0/7", "claims", 0, 7)]


async def test_one_store_error_on_one_event_is_tried_again_not_dead_lettered(monkeypatch: Any) -> None:
    p, calls = processor(monkeypatch, ["fail", "ok"])
    report = await p.apply(EVENT)
    assert calls == [{}, {}] and not report.rejected  # replay would apply it: so does serve


async def test_an_event_the_store_keeps_refusing_goes_to_the_dlq_after_three_tries(monkeypatch: Any) -> None:
    p, calls = processor(monkeypatch, ["fail", "fail", "fail", "ok"])
    report = await p.apply(EVENT)
    assert calls[:3] == [{}, {}, {}] and list(calls[3]) == [0]
    assert sum(report.rejected.values()) == 1


async def test_a_store_that_refuses_even_the_dead_letter_is_unavailable(monkeypatch: Any) -> None:
    p, _ = processor(monkeypatch, ["fail"] * 4)
    with pytest.raises(StoreUnavailable):  # retried by serve until it takes writes; nothing is lost
        await p.apply(EVENT)


async def test_the_idle_timer_loop_outlives_a_failed_pump(monkeypatch: Any) -> None:
    monkeypatch.setattr("engine.consumer.asyncio.sleep", _no_sleep)
    applied: list[str] = []
    failures = [True]

    async def apply(batches: Any) -> BatchReport:
        if failures and failures.pop():
            raise StoreError("escaped")
        applied.extend(raw.origin for batch in batches for raw in batch.raws)
        return BatchReport()

    processor = SimpleNamespace(
        wall_clock=lambda: datetime.now(UTC), database=SimpleNamespace(dialect=SimpleNamespace(name="postgresql"))
    )
    runner = TaskRunner(Settings(task_idle_ms=0), processor, ["claims"], apply, lambda *_: None, lambda: None)  # type: ignore[arg-type]
    runner.assign({0})
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    runner.inputs[0] = inputs = TaskInputs(["claims"])
    inputs.add("claims", RawEvent(b"", b"k", "claims/0/0", "claims", 0, 0, at=at), time.monotonic())
    stopping = asyncio.Event()
    loop = asyncio.create_task(runner.run(stopping))
    for _ in range(200):
        await _real_sleep(0.01)
        if loop.done() or inputs.waiting() == 0:
            break
    stopping.set()
    await asyncio.wait_for(loop, timeout=5)
    assert loop.exception() is None and not failures


_real_sleep = asyncio.sleep


async def _no_sleep(seconds: float) -> None:
    await _real_sleep(0)
