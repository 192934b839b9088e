"""Crash points for the crash tests: `DOCLOOP_CRASH_AT=point:n` kills the process (SIGKILL, like kill -9)
the n-th time it reaches `point`. Unset in production, where `crash_point` costs one dictionary lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

_plan = os.environ.get("DOCLOOP_CRASH_AT", "")
_point, _, _nth = _plan.partition(":")
_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if not _point or name != _point:
        return
    _reached[name] += 1
    if _reached[name] >= int(_nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
