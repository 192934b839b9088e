"""serve's inbound side: records from Kafka become tasks' inputs; what a task may apply goes to the store.

A task is one partition number across the co-partitioned inbound topics (engine/tasks.py merges its inputs
by event time). Tasks never wait for each other: each applies in its own transaction on its own rows
(PostgreSQL runs them concurrently; SQLite, one writer at a time, in turn).

Offsets. A task's transaction stores how far each of its input partitions is applied (`task_positions`) with
the state it produced, and skips records below that: the store, not Kafka, says where a task resumes, so a task
that moves to another replica (a rebalance, a kill -9) resumes exactly at its committed state. Kafka offsets
are committed after each database commit only so that consumer lag stays visible (best effort). FastStream's
`ack()` is never called: it would commit the fetch position of every partition, past records a task still
holds back while it waits for a quiet input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from engine.clocks import ClockHistory
from engine.database import RESERVED_CONNECTIONS
from engine.metrics import Metrics
from engine.service import BatchReport, Processor, RawEvent, TaskBatch
from engine.settings import Settings
from engine.store import repository
from engine.tasks import TaskInputs, event_time

log = logging.getLogger("docloop.consumer")

WENT_ON_LOG_SECONDS = 60.0
STALLED_RETRY_SECONDS = 0.1
LOG_START_TTL_SECONDS = 60.0
LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker set its timestamp on arrival

Apply = Callable[[Sequence[TaskBatch]], Awaitable[BatchReport]]
Applied = Callable[[BatchReport, int, float], None]
Part = tuple[int, list[RawEvent], bool]  # of a transaction: a task, its records, whether they are its last ready


class BrokerOffsets:
    """Partitions' end offsets, from a client of its own: the group consumer's ListOffsets request waits
    behind its own fetch (up to fetch_max_wait_ms, 500 ms); a client that fetches nothing answers at once."""

    def __init__(self, bootstrap: str, **security: Any) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.client: AIOKafkaConsumer | None = None
        self.starts: dict[TopicPartition, tuple[float, int]] = {}  # log start offsets: (when asked, offset)

    async def _started(self) -> AIOKafkaConsumer:
        if self.client is None:
            client = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, **self.security
            )
            await client.start()
            self.client = client
        return self.client

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(await (await self._started()).end_offsets(list(partitions)))

    async def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each partition's log starts (retention deletes below it), asked at most once a minute per
        partition: in a backfill every stage pass wants it for every partition, and it moves only with retention
        (a value a minute old is at most a minute late to stop counting deleted records as input left)."""
        now = time.monotonic()
        stale = [tp for tp in partitions if now - self.starts.get(tp, (-math.inf, 0))[0] >= LOG_START_TTL_SECONDS]
        if stale:
            found = await (await self._started()).beginning_offsets(stale)
            self.starts.update({tp: (now, offset) for tp, offset in found.items()})
        return {tp: self.starts[tp][1] for tp in partitions if tp in self.starts}

    async def close(self) -> None:
        if self.client is not None:
            await self.client.stop()
            self.client = None


async def _position(consumer: Any, tp: TopicPartition) -> int:
    """The consumer's fetch position, waiting at most 0.5 s for one it does not know yet. Not wait_for: on this
    Python that wraps the call in a task, and the pump would give way to the loop for every input partition
    even when the position is known at once."""
    async with asyncio.timeout(0.5):
        position: int = await consumer.position(tp)
        return position


class TaskRunner:
    def __init__(
        self,
        settings: Settings,
        processor: Processor,
        topics: Sequence[str],
        apply: Apply,
        applied: Applied,
        consumer: Callable[[], Any],
        offsets: BrokerOffsets | None = None,
        metrics: Metrics | None = None,
        clocks: ClockHistory | None = None,
    ) -> None:
        self.settings = settings
        self.clocks = clocks  # the department stage's record of the tasks' clocks (engine/clocks.py)
        self.metrics = metrics
        self.processor = processor
        self.topics = list(dict.fromkeys(topics))
        self.apply = apply  # applies tasks' batches in one transaction, waiting out store outages
        self.applied = applied  # told about every applied batch (metrics, logs, waking the relay)
        self.consumer = consumer  # the aiokafka consumer, once started
        self.offsets = offsets
        self.idle_seconds = settings.task_idle_ms / 1000
        self.inputs: dict[int, TaskInputs] = {}
        self.lock = asyncio.Lock()  # one pump at a time; a rebalance waits for the pump in hand
        self.committing: set[asyncio.Task[None]] = set()  # offset commits begun by a rebalance
        # Tasks apply their batches at once, but not more of them than the pool keeps connections for.
        self.slots = asyncio.Semaphore(max(1, settings.database_pool_size - RESERVED_CONNECTIONS))
        # Tasks assigned now: only these apply (a task held by two replicas for a moment would apply in two
        # orders). On assignment every input partition is read again from the position the store holds; the
        # queues replace what they had from there on (TaskInputs.add), so nothing is lost or doubled.
        self.owned: set[int] = set()
        # Bounded buffers (Kafka Streams' buffered.records.per.partition): an input partition whose task holds
        # back DOCLOOP_BUFFERED_RECORDS_PER_PARTITION of its records is paused until the task has caught up to
        # half of that. A paused partition's queue is never empty, so no merge waits for it. What the pause
        # kept in the broker counts as arrived when the pause began (`held`: per partition, the end offset then
        # and the time): it was on its way by then, and its idle allowance must not start over on each refill.
        self.limit = settings.buffered_records_per_partition
        self.paused: set[TopicPartition] = set()
        self.held: dict[TopicPartition, list[tuple[int, float]]] = {}
        # Partitions whose records the consumer has handed out (its position is past them) that have not
        # reached `add` yet: FastStream's loop suspends between getmany and the handler, and a pump running then
        # (the idle timer's) would see the position at the end offset and take such an input for quiet.
        self.in_flight: set[TopicPartition] = set()
        self.watched: Any = None  # the consumer whose getmany reports to in_flight
        self.applying: set[int] = set()  # tasks with records taken from their queues and not committed yet
        # Tasks whose taken records may be neither queued nor stored (their transaction failed or was cancelled):
        # until they are assigned again, what their queues hold says nothing of what they will apply.
        self.unsure: set[int] = set()
        self.went_on_log: dict[int, tuple[float, Counter[str]]] = {}  # per task: last said, counted since

    def watch(self, consumer: Any) -> None:
        """Hear of every batch the consumer hands out, before its records reach `add` (see in_flight)."""
        if consumer is None or consumer is self.watched:
            return
        fetch = consumer.getmany

        async def getmany(*partitions: TopicPartition, **options: Any) -> dict[TopicPartition, list[Any]]:
            records: dict[TopicPartition, list[Any]] = await fetch(*partitions, **options)
            self.in_flight.update(records)
            return records

        consumer.getmany = getmany
        self.watched = consumer

    # ---- records in -----------------------------------------------------------------------------------

    async def add(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        self.in_flight.clear()  # FastStream hands over each batch getmany returned whole, one at a time
        wall = self.processor.wall_clock()
        now, epoch = time.monotonic(), time.time()
        for r in records:
            origin = f"{r.topic}/{r.partition}/{r.offset}"
            decoded = self.processor.decoded(RawEvent(r.value, r.key, origin), wall)
            arrived = self._arrival(r, now, epoch)
            raw = RawEvent(
                r.value, r.key, origin, r.topic, r.partition, r.offset, decoded, event_time(decoded), arrived
            )
            task = self.inputs.get(r.partition)
            if task is None:
                task = self.inputs[r.partition] = TaskInputs(self.topics)
            task.add(r.topic, raw, arrived)
        self._flow(now)
        await self.pump()

    def _arrival(self, record: ConsumerRecord[Any, Any], now: float, epoch: float) -> float:
        """When a record counts as arrived (on the monotonic clock): when it reached the broker, if the broker
        says so (a topic with `message.timestamp.type=LogAppendTime`); else now, or when a pause held it back
        in the broker.

        The promise bounds how much later one input's records reach the broker than another's of the same
        event time, so the idle allowance runs from the broker's append time: records a backfill or a failover
        finds there long since wait only for the broker's word that nothing earlier is on its way. A producer's
        own timestamp (CreateTime) may be anything, an event time among them, so it is not used."""
        held = self.held.get(TopicPartition(record.topic, record.partition))
        while held and held[0][0] <= record.offset:  # offsets only grow (a re-read comes with a rebalance)
            held.pop(0)
        arrived = min(now, held[0][1]) if held else now
        if record.timestamp_type == LOG_APPEND_TIME and record.timestamp is not None:
            # The broker's clock against this host's (NTP keeps them milliseconds apart); never in the future.
            arrived = min(arrived, now - max(0.0, epoch - record.timestamp / 1000))
        return arrived

    def _flow(self, now: float) -> None:
        """Pause the input partitions whose queue is full; resume those drained to half of it."""
        consumer = self.consumer()
        if consumer is None:
            return
        assigned = consumer.assignment()
        full, drained = [], []
        for task, inputs in self.inputs.items():
            for topic, queue in inputs.queues.items():
                tp = TopicPartition(topic, task)
                if tp not in self.paused and len(queue) >= self.limit and tp in assigned:
                    full.append(tp)
                elif tp in self.paused and len(queue) <= self.limit // 2:
                    drained.append(tp)
        self.paused.difference_update(drained)
        if resumed := [tp for tp in drained if tp in assigned]:
            consumer.resume(*resumed)
        if full:
            consumer.pause(*full)
            self.paused.update(full)
            for tp in full:
                queue = self.inputs[tp.partition].queues[tp.topic]
                end = max(consumer.highwater(tp) or 0, (queue[-1].offset or 0) + 1)
                self.held.setdefault(tp, []).append((end, now))

    def revoke(self, partitions: set[int]) -> None:
        """A rebalance began: apply nothing of these tasks until they are assigned again (to this replica or
        not). What they hold stays until then: the consumer may go on after it rather than read it again."""
        self.owned -= partitions

    def assign(self, partitions: set[int]) -> None:
        """The rebalance ended: tasks of other replicas now drop what they held. A task kept here keeps its
        queues: the consumer reads its partitions again from the stored positions, and TaskInputs.add replaces
        what comes again (records fetched for the new assignment may already be queued: dropping everything
        here would lose them, the consumer being past them)."""
        self.owned = set(partitions)
        self.unsure.clear()  # read again from the stored positions
        # aiokafka hands out every partition unpaused and reads from the stored positions: what was held back
        # comes again as new arrivals (the conservative side).
        self.paused.clear()
        self.held.clear()
        for partition in [p for p in self.inputs if p not in self.owned]:
            del self.inputs[partition]
        self._gauges()

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.held_records.set(sum(inputs.waiting() for inputs in self.inputs.values()))
            self.metrics.paused_partitions.set(len(self.paused))

    # ---- applying -------------------------------------------------------------------------------------

    async def pump(self) -> int:
        """Apply what every task may apply now; then commit the Kafka offsets of what was applied. Returns how
        many records were applied."""
        async with self.lock:
            waiting = {t: inputs for t, inputs in sorted(self.inputs.items()) if t in self.owned and inputs.waiting()}
            behind = {t: await self._behind(t, inputs) for t, inputs in waiting.items()}
            # About to go on without a quiet input: first ask the broker whether it has records for it that the
            # consumer has not fetched (the fetch position and high watermark can be stale); one request for all.
            # The takes below use this same `now`: a record whose allowance runs out after it waits for the next
            # round (else it could go on without the broker having been asked).
            now = time.monotonic()
            due = {t: inputs for t, inputs in waiting.items() if inputs.overdue(now, self.idle_seconds)}
            for t, topics in (await self._unfetched(due)).items():
                behind[t] |= topics
            for tp in self.in_flight:  # handed out by the consumer, not queued yet: on their way
                if tp.partition in behind:
                    behind[tp.partition] |= {tp.topic}
            ready: dict[int, list[RawEvent]] = {}
            for task, inputs in waiting.items():
                before = inputs.went_on
                inputs.passed.clear()
                if taken := inputs.take(now, self.idle_seconds, behind=behind[task]):
                    ready[task] = taken
                if inputs.went_on > before:
                    self._went_on(task, inputs.passed, now)
            units = self._transactions(ready)
            self.applying.update(ready)
            if self.processor.database.dialect.name == "sqlite":  # one writer at a time
                done = [await self._apply_unit(unit) for unit in units]
            else:
                done = list(await asyncio.gather(*(self._apply_unit(unit) for unit in units)))
        if self.paused:
            self._flow(time.monotonic())
        self._gauges()
        offsets = {tp: offset for moved in done for tp, offset in moved.items()}
        if offsets:
            await self._commit(offsets)
        return sum(len(raws) for raws in ready.values())

    def _went_on(self, task: int, passed: Counter[str], now: float) -> None:
        """Count records applied without waiting any longer for a quiet input; say so at most once a minute per
        task (with a topic that is always quiet, that is every batch: the metric has every one)."""
        if self.metrics is not None:
            for topic, count in passed.items():
                self.metrics.not_waited.labels(input=topic).inc(count)
        last, counted = self.went_on_log.setdefault(task, (-math.inf, Counter()))
        counted.update(passed)
        if now - last >= WENT_ON_LOG_SECONDS:
            # which inputs were not waited for any longer, and for how many records since the last line
            log.info("task went on without a quiet input", extra={"task": task, "inputs": dict(counted)})
            self.went_on_log[task] = (now, Counter())

    async def _behind(self, task: int, inputs: TaskInputs) -> frozenset[str]:
        """The task's empty inputs whose partition has records the consumer has not handed over yet (its
        position is below the partition's high watermark): consumer lag, not a quiet producer."""
        consumer = self.consumer()
        if consumer is None:
            return frozenset()
        found = set()
        for topic, queue in inputs.queues.items():
            if queue:
                continue
            tp = TopicPartition(topic, task)
            high = consumer.highwater(tp)
            try:
                position = await _position(consumer, tp)
            except Exception:  # no position yet (just assigned): records may well be on their way
                found.add(topic)
                continue
            if high is None or position < high:  # not fetched yet, or fetched and not handed over
                found.add(topic)
        return frozenset(found)

    async def _unfetched(self, tasks: dict[int, TaskInputs]) -> dict[int, frozenset[str]]:
        """Per task, its empty inputs whose partition's end offset in the broker is past the consumer's
        position. Asked only when a record has waited out DOCLOOP_TASK_IDLE_MS; if the broker does not answer,
        the tasks wait for the next round rather than go on blind."""
        consumer = self.consumer()
        empty = [TopicPartition(topic, t) for t, inputs in tasks.items() for topic, q in inputs.queues.items() if not q]
        if consumer is None or self.offsets is None or not empty:
            return {}
        found: dict[int, set[str]] = {t: set() for t in tasks}
        try:
            ends = await asyncio.wait_for(self.offsets.end_offsets(empty), timeout=2.0)
            for tp in empty:
                end = ends.get(tp)  # unknown: as if it had records on their way
                if end is None or end > await _position(consumer, tp):
                    found[tp.partition].add(tp.topic)
        except Exception as error:
            log.info("tasks wait: end offsets unknown", extra={"tasks": sorted(tasks), "error": type(error).__name__})
            for tp in empty:
                found[tp.partition].add(tp.topic)
        return {t: frozenset(topics) for t, topics in found.items()}

    def _transactions(self, ready: dict[int, list[RawEvent]]) -> list[list[list[Part]]]:
        """The transactions that apply what the tasks may apply now: units applied at once, each a sequence of
        transactions, each a list of parts. A task's records go in transactions of up to
        DOCLOOP_BATCH_MAX_RECORDS, one after the other; tasks with fewer records than that share transactions of
        up to that many (a steady feed brings each task a record or two at a time, and a transaction per task
        would cost more than its records)."""
        size = self.settings.batch_max_records
        units: list[list[list[Part]]] = []
        shared: list[Part] = []
        for task, raws in ready.items():
            if len(raws) >= size:
                starts = range(0, len(raws), size)
                units.append([[(task, raws[start : start + size], start + size >= len(raws))] for start in starts])
                continue
            if sum(len(part[1]) for part in shared) + len(raws) > size:
                units.append([shared])
                shared = []
            shared.append((task, raws, True))
        if shared:
            units.append([shared])
        return units

    async def _apply_unit(self, unit: list[list[Part]]) -> dict[TopicPartition, int]:
        tasks = {task for parts in unit for task, _, _ in parts}
        try:
            return await self._apply_transactions(unit)
        except BaseException:
            self.unsure |= tasks
            raise
        finally:
            self.applying -= tasks

    async def _apply_transactions(self, unit: list[list[Part]]) -> dict[TopicPartition, int]:
        moved: dict[TopicPartition, int] = {}
        for parts in unit:
            async with self.slots:
                # A task is idle once its last records go and it has no more input waiting (asked only now:
                # records keep arriving while earlier transactions apply).
                batches = [
                    TaskBatch(task, raws, last and (task not in self.inputs or not self.inputs[task].waiting()))
                    for task, raws, last in parts
                ]
                started = time.perf_counter()
                report = await self.apply(batches)
                records = sum(len(batch.raws) for batch in batches)
                self.applied(report, records, time.perf_counter() - started)
            if self.clocks is not None:  # the stage's settled time goes by when these records reached the broker
                for batch in batches:
                    # the latest event time, and of its records the one that reached the broker first
                    timed = [
                        (raw.at, -raw.arrived) for raw in batch.raws if raw.at is not None and raw.arrived is not None
                    ]
                    if timed:
                        at, first = max(timed)
                        self.clocks.observe_at(batch.task, at, -first)
            for batch in batches:
                for raw in batch.raws:
                    assert raw.topic is not None and raw.partition is not None and raw.offset is not None
                    tp = TopicPartition(raw.topic, raw.partition)
                    moved[tp] = max(moved.get(tp, 0), raw.offset + 1)
        return moved

    def commit_soon(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` (of this replica's partitions, best effort) from a task of its own."""
        committing = asyncio.get_running_loop().create_task(self._commit(offsets))
        self.committing.add(committing)  # (a reference, until it is done)
        committing.add_done_callback(self.committing.discard)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self.consumer()
        if consumer is None:
            return
        owned = consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await asyncio.wait_for(consumer.commit(mine), timeout=10)
        except Exception as error:  # the store holds the positions; Kafka's offsets only show lag
            log.info("kafka offset commit skipped", extra={"error": type(error).__name__})

    # ---- what the department stage may know of the records held back ------------------------------------

    async def held_back(self, tasks: set[int], ends: dict[TopicPartition, int]) -> dict[int, datetime | None]:
        """Of these tasks (input in the broker not applied yet), those that hold back in their queues every
        record the broker had (`ends`, asked after the stage's `asked_at`), none of them being applied: for each,
        the earliest event time among what it holds (None: no record with a time). What such a task applies from
        now on is those records, and records that reach the broker after the ask (under the promise, later than
        the stage's settled time): so the stage need not hold every message back at its clock while it waits
        for a quiet input (engine/store/repository.py watermark). Others are left out (the conservative side):
        a task being applied, one of another replica, one with records on their way or not fetched yet, or
        holding more than DOCLOOP_BATCH_MAX_RECORDS (not worth reading through: it has work to do anyway)."""
        consumer = self.consumer()
        found: dict[int, datetime | None] = {}
        if consumer is None or consumer is not self.watched:  # (a getmany not heard of may be on its way)
            return found
        for task in sorted(tasks):
            partitions = [TopicPartition(topic, task) for topic in self.topics]
            if not self._may_hold_all(task, partitions) or not await self._handed_over(consumer, partitions, ends):
                continue
            if not self._may_hold_all(task, partitions):  # asked again: the loop ran while positions were asked
                continue
            times = [raw.at for queue in self.inputs[task].queues.values() for raw in queue if raw.at is not None]
            found[task] = min(times, default=None)
        return found

    def _may_hold_all(self, task: int, partitions: list[TopicPartition]) -> bool:
        """Whether the task's queues can be all it has to apply: owned here, nothing of it being applied or
        lost in a failed transaction, no partition paused or with records on their way to `add`."""
        inputs = self.inputs.get(task)
        return (
            task in self.owned
            and task not in self.applying
            and task not in self.unsure
            and inputs is not None
            and inputs.waiting() <= self.settings.batch_max_records
            and not any(tp in self.in_flight or tp in self.paused for tp in partitions)
        )

    @staticmethod
    async def _handed_over(consumer: Any, partitions: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
        """Whether the consumer has handed over every record up to `ends` of these partitions."""
        try:
            for tp in partitions:
                if tp not in ends or await _position(consumer, tp) < ends[tp]:
                    return False
        except Exception:  # no position yet
            return False
        return True

    # ---- the loop that applies what waited for a quiet input --------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        stalled = False  # the last pump here found due records it could not apply yet
        while not stopping.is_set():
            now = time.monotonic()
            waits = [
                w
                for task, inputs in self.inputs.items()
                if task in self.owned and (w := inputs.next_wait(now, self.idle_seconds)) is not None
            ]
            timeout = min([*waits, 1.0]) + 0.005
            if stalled:
                # Due, yet held back: by records on their way (their arrival pumps anyway) or by an input the
                # broker is asked about on each pump. Not again within milliseconds: a backfill's consumer lag
                # would otherwise cost a pump and a ListOffsets request every 5 ms.
                timeout = max(timeout, STALLED_RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=timeout)
            if stopping.is_set():
                return
            stalled = False
            if any(inputs.waiting() for task, inputs in self.inputs.items() if task in self.owned):
                try:
                    applied = await self.pump()
                    now = time.monotonic()
                    stalled = not applied and any(
                        inputs.next_wait(now, self.idle_seconds) == 0
                        for task, inputs in self.inputs.items()
                        if task in self.owned
                    )
                except Exception as error:  # the records stay in the store's hands; this loop must not end
                    if stopping.is_set():
                        return
                    log.error("task pump failed; will try again", extra={"error": type(error).__name__})
                    await asyncio.sleep(1.0)


class TaskAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops what revoked tasks held back, after the batch in hand is committed."""

    def __init__(self, runner: TaskRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.runner.lock:
            self.runner.revoke({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Read each input partition again from where the store says its task stands. The seek is the
        # synchronous one: an awaiting one would wait for this very rebalance to finish. Partitions the store
        # has no position for start where the group's committed offset (never past the store's) or
        # auto_offset_reset says.
        consumer = self.runner.consumer()
        # Heard from now on. A getmany already waiting when the consumer's first assignment comes is not
        # wrapped; its records are the first any task gets, and no task can pass over what it has never held.
        self.runner.watch(consumer)
        stored: dict[tuple[str, int], int] = {}
        try:
            async with self.runner.processor.database.connect() as conn:
                stored = await repository.positions(conn, [(tp.topic, tp.partition) for tp in assigned])
            for tp in assigned:
                if consumer is not None and (tp.topic, tp.partition) in stored:
                    consumer.seek(tp, stored[(tp.topic, tp.partition)])
        except Exception as error:  # records below the store's positions are skipped when applied anyway
            log.error("assignment: could not seek to the stored positions", extra={"error": type(error).__name__})
        self.runner.assign({tp.partition for tp in assigned})
        if stored:
            # The group's offsets can lag the store's: a batch applied while its partition was being revoked is
            # not committed to Kafka (no longer this replica's), and records below the store's position are never
            # applied again, so nothing would commit past them until new records came (lag shown for ever at the
            # end of a feed). Committed once this rebalance is over: a commit inside it would wait for it.
            self.runner.commit_soon({TopicPartition(topic, part): offset for (topic, part), offset in stored.items()})
        log.info(
            "partitions assigned",
            extra={
                "tasks": sorted({tp.partition for tp in assigned}),
                # where each input partition is read again from (offsets only; absent: the group's offset)
                "stored_positions": {f"{topic}/{partition}": offset for (topic, partition), offset in stored.items()},
            },
        )


async def tasks_behind(
    offsets: BrokerOffsets,
    database: Any,
    topics: Sequence[str],
    partitions: int,
    ends: dict[TopicPartition, int] | None = None,
) -> set[int]:
    """Tasks with input in the broker that is not applied yet (end offset past the stored position): the
    department stage must wait for them, however long they have been quiet (a task between owners after a
    crash has no one to say it is busy). `ends` hears the end offsets the broker gave."""
    wanted = [TopicPartition(topic, p) for topic in dict.fromkeys(topics) for p in range(partitions)]
    ends = {} if ends is None else ends
    ends.update(await offsets.end_offsets(wanted))
    async with database.connect() as conn:
        applied = await repository.positions(conn, [(tp.topic, tp.partition) for tp in wanted])
    unapplied = [tp for tp in wanted if ends.get(tp, 0) > applied.get((tp.topic, tp.partition), 0)]
    if unapplied:
        # Records below a partition's log start are gone (retention; a new store on old topics): never to be
        # applied, they must not hold a task behind for ever (and with it every department's routing).
        starts = await offsets.beginning_offsets(unapplied)
        unapplied = [
            tp for tp in unapplied if ends.get(tp, 0) > max(starts.get(tp, 0), applied.get((tp.topic, tp.partition), 0))
        ]
    return {tp.partition for tp in unapplied}
