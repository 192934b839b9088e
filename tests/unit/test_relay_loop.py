"""The relay's loop (engine/relay.py): when it runs a pass."""

from __future__ import annotations

import asyncio

from engine.relay import Relay
from engine.settings import Settings


async def test_rows_committed_during_an_empty_pass_are_published_at_once_not_after_the_poll_interval() -> None:
    relay = Relay(Settings(relay_idle_ms=60_000), database=None, publishers={})  # type: ignore[arg-type]
    wake, stopping = asyncio.Event(), asyncio.Event()
    passes = 0

    async def relay_once() -> int:
        nonlocal passes
        passes += 1
        if passes == 1:
            wake.set()  # a stage committed outbox rows after this pass had read the outbox
        else:
            stopping.set()
            wake.set()  # (the loop looks at `stopping` when woken or after the poll interval)
        return 0

    relay.relay_once = relay_once  # type: ignore[method-assign]
    await asyncio.wait_for(relay.run(stopping, wake), timeout=5)
    assert passes == 2
