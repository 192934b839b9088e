"""How the processing commands (serve, replay) set up the interpreter."""

from __future__ import annotations

import gc

# Python's default thresholds (700, 10, 10) made serve spend 30% of its CPU in the cyclic garbage collector in a
# backfill: 44 full collections in 32 s, about 170 ms each, because the tasks' queues, the batches' state and the
# clients' caches are many objects and a full collection walks all of them. Reference counting frees nearly
# everything here; the collector is only there for the rare cycles (asyncio tasks, exceptions), and finds them
# as well when it looks less often: with these, the same backfill spent 1-1.5 s in it instead of 9, at the same
# peak memory.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
