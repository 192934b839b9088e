"""The department stage's view of the tasks' clocks over wall time (engine/store/repository.py watermark)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime


class ClockHistory:
    """When serve first saw each task's clock at each value: what the department stage may take as settled.

    The promise bounds how much later a record reaches the broker than any record of the same or a later event
    time: by DOCLOOP_TASK_IDLE_MS. So once a clock value v was seen that long ago (its record had reached the
    broker by then), every record of time up to v has reached the broker too: a task with nothing left to apply
    there will get none of them. `settled(before)` is the largest such v over all tasks, among clocks seen at or
    before `before - allowance` (`before`: when the broker was asked which tasks have input left)."""

    def __init__(self, allowance_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.allowance = allowance_seconds
        self.clock = clock  # when a value is seen
        self.started = clock()
        self.seen: dict[int, deque[tuple[float, datetime]]] = {}

    def age(self) -> float:
        """Seconds since this history began (serve's start)."""
        return self.clock() - self.started

    def observe(self, clocks: dict[int, datetime | None]) -> None:
        now = self.clock()
        for task, clock in clocks.items():
            if clock is None:
                continue
            history = self.seen.setdefault(task, deque())
            if not history or clock > history[-1][1]:
                history.append((now, clock))

    def observe_at(self, task: int, clock: datetime, when: float) -> None:
        """A task's clock reached `clock` by a record that reached the broker at `when` (this history's clock):
        settled an allowance after `when`, however late the stage sees it. Values seen before it that are
        smaller but were seen later are dropped (they settle no earlier than this one); so is the same value
        seen later (the stage may read the store between the batch's commit and this call)."""
        history = self.seen.setdefault(task, deque())
        if history and (clock < history[-1][1] or (clock == history[-1][1] and history[-1][0] <= when)):
            return
        while history and history[-1][0] >= when:
            history.pop()
        history.append((when, clock))

    def settled(self, before: float) -> datetime | None:
        cutoff = before - self.allowance
        found: datetime | None = None
        for history in self.seen.values():
            while len(history) >= 2 and history[1][0] <= cutoff:  # a later value is settled: the older is moot
                history.popleft()
            if history and history[0][0] <= cutoff:
                found = history[0][1] if found is None else max(found, history[0][1])
        return found
