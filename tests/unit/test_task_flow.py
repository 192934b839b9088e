"""serve's pump (engine/consumer.py): when a task may go on without a quiet input, and how much it holds back
(an input partition whose queue is full is paused until its task catches up)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from engine.clocks import ClockHistory
from engine.consumer import TaskRunner
from engine.metrics import Metrics
from engine.service import BatchReport
from engine.settings import Settings

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TOPICS = ["claims", "notes", "acks"]


class FakeConsumer:
    """What TaskRunner asks of aiokafka's consumer: assignment, pause/resume, positions, commits."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.pauses: list[TopicPartition] = []
        self.ends: dict[TopicPartition, int] = {}
        self.positions: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(topic, 0) for topic in TOPICS}

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)
        self.pauses.extend(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)

    def highwater(self, tp: TopicPartition) -> int:
        return self.ends.get(tp, 0)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)  # caught up unless told otherwise: an empty input is a quiet producer

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(topic: str, offset: int, minutes: int) -> ConsumerRecord[Any, Any]:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return ConsumerRecord(topic, 0, offset, 0, 0, b"k", at.encode(), None, 0, 0, [])


def fake_processor() -> Any:
    """What TaskRunner asks of the processor: wall time, decoding (a record's value is its event time), dialect."""
    return SimpleNamespace(
        wall_clock=lambda: T0,
        decoded=lambda raw, wall: SimpleNamespace(occurred_at=datetime.fromisoformat(raw.value.decode())),
        database=SimpleNamespace(dialect=SimpleNamespace(name="postgresql")),
    )


def runner(consumer: FakeConsumer, applied: list[str]) -> TaskRunner:
    processor = fake_processor()

    async def apply(batches: Any) -> BatchReport:
        applied.extend(raw.origin for batch in batches for raw in batch.raws)
        return BatchReport()

    settings = Settings(task_idle_ms=600_000, buffered_records_per_partition=4)  # quiet inputs: wait long
    tasks = TaskRunner(settings, processor, TOPICS, apply, lambda *_: None, lambda: consumer)  # type: ignore[arg-type]
    tasks.assign({0})
    return tasks


async def test_a_full_input_is_paused_and_resumed_once_its_task_caught_up() -> None:
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    await tasks.add([record("claims", offset, offset) for offset in range(3)])
    assert applied == [] and consumer.paused == set()  # waiting for notes and acks, below the limit

    await tasks.add([record("claims", offset, offset) for offset in range(3, 6)])
    assert applied == []
    assert consumer.paused == {TopicPartition("claims", 0)}  # 6 held back >= 4: fetch no more of it
    assert tasks.inputs[0].waiting() == 6

    # notes and acks show later times: the claims go, and the partition is fetched again.
    await tasks.add([record("notes", 0, 100), record("acks", 0, 100)])
    assert applied == [f"claims/0/{offset}" for offset in range(6)]
    assert consumer.paused == set()
    assert consumer.pauses == [TopicPartition("claims", 0)]


async def test_what_a_pause_held_back_counts_as_arrived_when_the_pause_began(monkeypatch: Any) -> None:
    """Without it, each refill of a paused partition would start the wait for a quiet input over: a task
    waiting on an input that stays quiet would apply one queue's worth per DOCLOOP_TASK_IDLE_MS."""
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    claims = TopicPartition("claims", 0)
    consumer.ends[claims] = 10  # ten claims in the broker; notes and acks stay quiet
    await tasks.add([record("claims", offset, offset) for offset in range(4)])
    assert consumer.paused == {claims}
    clock.now = 102.0  # the allowance ran out: the four go, the partition is fetched again
    await tasks.pump()
    assert len(applied) == 4 and consumer.paused == set()
    clock.now = 102.1  # the rest was in the broker when the pause began (at 100): no new wait
    await tasks.add([record("claims", offset, offset) for offset in range(4, 7)])
    await tasks.pump()
    assert len(applied) == 7
    clock.now = 102.2  # produced after the pause began: a new arrival, with its own allowance
    await tasks.add([record("claims", offset, offset) for offset in range(10, 12)])
    assert len(applied) == 7


class SlowBroker:
    """End offsets that take a while to come (time moves on meanwhile), and name records not fetched yet."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asked: list[TopicPartition] = []

    async def end_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
        self.asked.extend(partitions)
        self.clock.now += 0.5
        return {tp: 5 for tp in partitions}  # every empty input has records in the broker


async def test_a_record_whose_allowance_runs_out_during_the_broker_check_waits_for_the_next_round(
    monkeypatch: Any,
) -> None:
    """Task 0's record is due: the broker is asked about its empty inputs. Task 1's record becomes due while
    that question is out; it must not go on without its own inputs unasked (they have records on the way)."""
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    both = {TopicPartition(topic, task) for topic in TOPICS for task in (0, 1)}
    consumer.assignment = lambda: both  # type: ignore[method-assign]
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    tasks.offsets = SlowBroker(clock)  # type: ignore[assignment]
    tasks.assign({0, 1})
    tasks.inputs.clear()
    clock.now = 97.0
    await tasks.add([ConsumerRecord("claims", 0, 0, 0, 0, b"k", T0.isoformat().encode(), None, 0, 0, [])])
    clock.now = 99.8
    await tasks.add([ConsumerRecord("claims", 1, 0, 0, 0, b"k", T0.isoformat().encode(), None, 0, 0, [])])
    clock.now = 101.7  # task 0 is due (since 99.0); task 1 at 101.8, while the broker is being asked
    await tasks.pump()
    assert applied == []  # task 0: the broker has notes and acks for it; task 1: not due when asked
    assert {tp.partition for tp in tasks.offsets.asked} == {0}  # type: ignore[attr-defined]


class HandingOutBroker:
    """End offsets that come after the consumer handed out the records that make them (FastStream's loop runs
    getmany while the pump waits for the answer; the records reach `add` a moment later)."""

    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer
        self.on_the_way: dict[TopicPartition, list[Any]] = {}

    async def end_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
        self.on_the_way = await self.consumer.getmany(timeout_ms=0)
        return {tp: self.consumer.positions.get(tp, 0) for tp in partitions}


async def test_records_the_consumer_handed_out_but_not_yet_queued_are_waited_for(monkeypatch: Any) -> None:
    """The consumer's position is past a note it handed to FastStream, which has not called the handler yet:
    the end offset equals the position, yet the note must not be passed over (the three-replica equality run
    applied a month of claims before notes this way)."""
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    note = record("notes", 0, -5)  # signed before the claim

    async def getmany(*partitions: TopicPartition, **options: Any) -> dict[TopicPartition, list[Any]]:
        if consumer.positions.get(TopicPartition("notes", 0)):
            return {}
        consumer.positions[TopicPartition("notes", 0)] = 1
        return {TopicPartition("notes", 0): [note]}

    consumer.getmany = getmany  # type: ignore[attr-defined]
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    tasks.watch(consumer)
    broker = HandingOutBroker(consumer)
    tasks.offsets = broker  # type: ignore[assignment]
    await tasks.add([record("claims", 0, 0)])
    clock.now = 103.0  # the claim's allowance ran out; notes and acks look quiet to the consumer
    await tasks.pump()
    assert applied == []  # the note is on its way to the handler
    await tasks.add(broker.on_the_way[TopicPartition("notes", 0)])
    clock.now = 105.5  # acks stay quiet past the note's own allowance
    await tasks.pump()
    await tasks.pump()  # the note's input ran dry in that take: the broker is asked about it again first
    assert applied == ["notes/0/0", "claims/0/0"]


async def test_metrics_show_what_tasks_hold_back_and_what_they_did_not_wait_for(monkeypatch: Any) -> None:
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    tasks.metrics = metrics = Metrics()

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    await tasks.add([record("claims", offset, offset) for offset in range(4)])
    assert value("docloop_task_held_records") == 4 and value("docloop_task_paused_partitions") == 1
    clock.now = 102.0  # notes and acks stayed quiet for the whole allowance: the claims go without them
    await tasks.pump()
    assert len(applied) == 4
    assert value("docloop_task_held_records") == 0 and value("docloop_task_paused_partitions") == 0
    assert value("docloop_task_records_not_waited_for_total", input="notes") == 4
    assert value("docloop_task_records_not_waited_for_total", input="acks") == 4


async def test_going_on_without_a_quiet_input_is_said_at_most_once_a_minute_per_task(
    monkeypatch: Any, caplog: Any
) -> None:
    """A topic that is always quiet (reviews in most hospitals) makes every batch go on without it: one log
    line a minute per task, counting what went on since the last one (the metric counts every record)."""
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    caplog.set_level("INFO", logger="docloop.consumer")

    def said() -> list[Any]:
        return [r for r in caplog.records if r.getMessage() == "task went on without a quiet input"]

    for minute in range(4):  # a claim every 15 s, each applied without notes and acks after its allowance
        await tasks.add([record("claims", minute, minute)])
        clock.now += 2.0
        await tasks.pump()
        clock.now += 13.0
    assert len(applied) == 4
    assert [r.inputs for r in said()] == [{"notes": 1, "acks": 1}]  # the first at once, then not for a minute
    await tasks.add([record("claims", 4, 4)])
    clock.now += 2.0  # 62 s after the first line
    await tasks.pump()
    assert [r.inputs for r in said()][1:] == [{"notes": 4, "acks": 4}]  # the three held back and this one


async def test_tasks_apply_at_once_but_no_more_of_them_than_the_pool_has_connections_for() -> None:
    consumer = FakeConsumer()
    processor = fake_processor()
    running: list[int] = []
    most = 0

    async def apply(batches: Any) -> BatchReport:
        nonlocal most
        running.append(batches[0].task)
        most = max(most, len(running))
        await asyncio.sleep(0.01)
        running.remove(batches[0].task)
        return BatchReport()

    # 6 less the 4 kept for the stages: 2 at once; a batch each that fills a transaction (none shares one)
    settings = Settings(task_idle_ms=0, database_pool_size=6, batch_max_records=1)
    tasks = TaskRunner(settings, processor, ["claims"], apply, lambda *_: None, lambda: consumer)  # type: ignore[arg-type]
    tasks.assign(set(range(6)))
    at = T0.isoformat().encode()
    await tasks.add([ConsumerRecord("claims", p, 0, 0, 0, b"k", at, None, 0, 0, []) for p in range(6)])
    await tasks.pump()
    assert most == 2


async def test_tasks_with_a_few_records_share_a_transaction_and_a_full_one_has_its_own() -> None:
    consumer = FakeConsumer()
    processor = fake_processor()
    transactions: list[list[tuple[int, int, bool]]] = []

    async def apply(batches: Any) -> BatchReport:
        transactions.append([(b.task, len(b.raws), b.idle) for b in batches])
        return BatchReport()

    tasks = TaskRunner(
        Settings(task_idle_ms=0, batch_max_records=3), processor, ["claims"], apply, lambda *_: None, lambda: consumer
    )  # type: ignore[arg-type]
    tasks.assign(set(range(6)))
    at = T0.isoformat().encode()
    counts = {0: 1, 1: 2, 2: 7, 3: 1, 4: 1}  # records per task (partition)
    await tasks.add(
        [ConsumerRecord("claims", p, o, 0, 0, b"k", at, None, 0, 0, []) for p, n in counts.items() for o in range(n)]
    )
    # task 2: 3 + 3 + 1 on its own, in order; the others share transactions of up to 3 records
    assert sorted(transactions) == sorted(
        [[(0, 1, True), (1, 2, True)], [(2, 3, False)], [(2, 3, False)], [(2, 1, True)], [(3, 1, True), (4, 1, True)]]
    )
    assert [t for t in transactions if t[0][0] == 2] == [[(2, 3, False)], [(2, 3, False)], [(2, 1, True)]]


def stamped(topic: str, offset: int, minutes: int, appended: float, by_broker: bool) -> ConsumerRecord[Any, Any]:
    """A record whose timestamp (epoch seconds) the broker set on arrival (LogAppendTime) or the producer gave."""
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    kind = 1 if by_broker else 0
    return ConsumerRecord(topic, 0, offset, int(appended * 1000), kind, b"k", at.encode(), None, 0, 0, [])


def on_clocks(monkeypatch: Any) -> tuple[Clock, Clock, TaskRunner, list[str]]:
    """A task runner (2 s allowance) on a monotonic clock and a wall clock (epoch seconds) the test moves."""
    clock, epoch = Clock(100.0), Clock(1_800_000_000.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    monkeypatch.setattr("engine.consumer.time.time", epoch)
    applied: list[str] = []
    tasks = runner(FakeConsumer(), applied)
    tasks.idle_seconds = 2.0
    return clock, epoch, tasks, applied


async def test_the_allowance_runs_from_when_the_broker_got_the_record_if_the_broker_stamped_it(
    monkeypatch: Any,
) -> None:
    """A backfill's records (in the broker for minutes) go at once when the quiet inputs have nothing in the
    broker; a record the broker got a second ago waits the rest of the allowance."""
    clock, epoch, tasks, applied = on_clocks(monkeypatch)

    await tasks.add([stamped("claims", 0, 0, epoch.now - 300, by_broker=True)])
    assert applied == ["claims/0/0"]

    await tasks.add([stamped("claims", 1, 1, epoch.now - 1.5, by_broker=True)])
    assert applied == ["claims/0/0"]
    assert tasks.inputs[0].next_wait(clock.now, tasks.idle_seconds) == 0.5
    clock.now += 0.5
    await tasks.pump()
    assert applied == ["claims/0/0", "claims/0/1"]


async def test_a_producers_timestamp_or_one_from_the_future_does_not_shorten_the_wait(monkeypatch: Any) -> None:
    """CreateTime is whatever the producer wrote (an event time, say); a broker clock ahead of this host's
    must not make a record count as arrived later than now either."""
    clock, epoch, tasks, applied = on_clocks(monkeypatch)

    await tasks.add([stamped("claims", 0, 0, epoch.now - 300, by_broker=False)])
    assert applied == []
    assert tasks.inputs[0].next_wait(clock.now, tasks.idle_seconds) == 2.0

    await tasks.add([stamped("notes", 0, 1, epoch.now + 5, by_broker=True)])
    assert tasks.inputs[0].arrived["notes"][0] == clock.now
    clock.now += 2.0
    await tasks.pump()
    await tasks.pump()  # (the claims input ran dry in the first: the broker is asked again before notes go)
    assert applied == ["claims/0/0", "notes/0/0"]


class AckOnTheWay:
    """The broker holds an acknowledgement (offset 0) the consumer has not fetched, appended at 101.5."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.asked: list[TopicPartition] = []

    async def end_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
        self.asked.extend(partitions)
        return {tp: 1 if tp.topic == "acks" and self.clock.now >= 101.5 else 0 for tp in partitions}


async def test_the_broker_is_asked_when_any_head_has_waited_out_its_allowance(monkeypatch: Any) -> None:
    """A note at +6 min waits for acks (quiet) from 100.0. A claim at +5.2 arrives at 101.0: it is the smallest
    head and not due, but once it goes (notes and acks showed later times), the note, due since 102.0, would go
    on without acks unasked, while the broker holds an ack at +5.8 appended at 101.5."""
    clock = Clock(100.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 2.0
    tasks.offsets = broker = AckOnTheWay(clock)  # type: ignore[assignment]
    await tasks.add([record("notes", 0, 6)])
    clock.now = 101.0
    await tasks.add([record("claims", 0, 5)])  # the claim waits for acks (nothing shown yet), due at 103.0
    clock.now = 102.5
    await tasks.pump()
    assert [tp.topic for tp in broker.asked] == ["acks"] and applied == []  # asked: the note is overdue
    await tasks.add(
        [ConsumerRecord("acks", 0, 0, 0, 0, b"k", (T0 + timedelta(minutes=5.8)).isoformat().encode(), None, 0, 0, [])]
    )
    consumer.positions[TopicPartition("acks", 0)] = 1  # fetched
    clock.now = 105.0  # claims stays quiet past the ack's allowance
    await tasks.pump()
    await tasks.pump()
    assert applied == ["claims/0/0", "acks/0/0", "notes/0/0"]  # in event-time order


async def test_the_idle_loop_does_not_spin_on_a_record_held_for_input_on_its_way() -> None:
    """A due claim waits for notes the consumer has not handed over yet (its position is below the high
    watermark): through a backfill's consumer lag. The loop must not pump (and ask the broker) every 5 ms."""
    consumer, applied = FakeConsumer(), []
    consumer.ends[TopicPartition("notes", 0)] = 10  # fetched up to 0 of 10: on their way
    tasks = runner(consumer, applied)
    tasks.idle_seconds = 0.0
    await tasks.add([record("claims", 0, 0)])
    pumps = 0
    pump = tasks.pump

    async def counted() -> int:
        nonlocal pumps
        pumps += 1
        return await pump()

    tasks.pump = counted  # type: ignore[method-assign]
    stopping = asyncio.Event()
    loop = asyncio.create_task(tasks.run(stopping))
    await asyncio.sleep(0.35)
    stopping.set()
    await asyncio.wait_for(loop, timeout=5)
    assert applied == [] and 1 <= pumps <= 6  # every 0.1 s at most (every 5 ms before: about 70)


async def test_the_stage_hears_when_the_latest_record_of_a_batch_reached_the_broker(monkeypatch: Any) -> None:
    """The settled time (engine/clocks.py) runs from the broker's append time of the record behind a clock, not
    from when the stage first read the clock: a record that waited out the allowance for a quiet input is not
    made to wait it out a second time at the watermark."""
    clock, epoch = Clock(100.0), Clock(1_800_000_000.0)
    monkeypatch.setattr("engine.consumer.time.monotonic", clock)
    monkeypatch.setattr("engine.consumer.time.time", epoch)
    history = ClockHistory(2.0, clock=clock)

    async def apply(batches: Any) -> BatchReport:
        return BatchReport()

    settings = Settings(task_idle_ms=2000)
    tasks = TaskRunner(
        settings, fake_processor(), ["claims"], apply, lambda *_: None, lambda: FakeConsumer(), clocks=history
    )  # type: ignore[arg-type]
    tasks.assign({0})
    await tasks.add([stamped("claims", 0, 1, appended=epoch.now - 0.5, by_broker=True)])
    await tasks.add([stamped("claims", 1, 2, appended=epoch.now - 0.2, by_broker=True)])
    when, value = history.seen[0][-1]
    assert value == T0 + timedelta(minutes=2) and abs(when - 99.8) < 0.001
    assert history.settled(before=101.8) == T0 + timedelta(minutes=2)


async def test_the_stage_hears_the_earliest_record_a_task_holds_back_only_when_it_holds_all_it_has_in_the_broker() -> (
    None
):
    """TaskRunner.held_back: a task waiting for a quiet input holds its claims; if the consumer has handed over
    every record the broker had (the end offsets the stage asked for), the stage may bound the task at the
    earliest of them instead of its clock. Not while records are on their way, fetched but not handed over, or
    taken for a transaction not committed yet."""
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    await tasks.add([record("claims", 0, 5), record("claims", 1, 3)])
    assert applied == []  # waiting for notes and acks
    claims = TopicPartition("claims", 0)
    ends = {TopicPartition(topic, 0): 0 for topic in TOPICS} | {claims: 2}
    consumer.positions[claims] = 2
    assert await tasks.held_back({0}, ends) == {}  # a consumer whose getmany it does not hear of
    tasks.watched = consumer
    assert await tasks.held_back({0}, ends) == {0: T0 + timedelta(minutes=3)}  # the earliest, not the head
    assert await tasks.held_back({1}, ends) == {}  # not this replica's task

    consumer.positions[claims] = 1  # one fetched, not handed over yet
    assert await tasks.held_back({0}, ends) == {}
    consumer.positions[claims] = 2
    tasks.in_flight.add(claims)  # handed out by getmany, not queued yet
    assert await tasks.held_back({0}, ends) == {}
    tasks.in_flight.clear()
    tasks.applying.add(0)  # records taken, their transaction not committed
    assert await tasks.held_back({0}, ends) == {}
    tasks.applying.clear()
    assert await tasks.held_back({0}, {claims: 2}) == {}  # an input the broker did not answer for
    tasks.unsure.add(0)  # a transaction of it failed: what it took may be neither queued nor stored
    assert await tasks.held_back({0}, ends) == {}
    tasks.assign({0})
    assert await tasks.held_back({0}, ends) == {0: T0 + timedelta(minutes=3)}


async def test_records_handed_out_while_the_stage_asked_for_positions_are_not_passed_over() -> None:
    """A position aiokafka does not know yet is waited for; meanwhile getmany may hand out an acknowledgement
    (in flight, not queued): the task must not count as holding everything."""
    consumer, applied = FakeConsumer(), []
    tasks = runner(consumer, applied)
    tasks.watched = consumer
    await tasks.add([record("claims", 0, 5)])
    acks = TopicPartition("acks", 0)
    ends = {TopicPartition(topic, 0): 0 for topic in TOPICS} | {TopicPartition("claims", 0): 1, acks: 1}
    consumer.positions[TopicPartition("claims", 0)] = 1
    known = consumer.position

    async def position(tp: TopicPartition) -> int:
        if tp == acks:
            await asyncio.sleep(0)
            tasks.in_flight.add(acks)  # getmany handed it out; the handler has not queued it
            return 1
        return await known(tp)

    consumer.position = position  # type: ignore[method-assign]
    assert await tasks.held_back({0}, ends) == {}


async def test_a_task_counts_as_applying_from_the_take_until_its_transaction_ends() -> None:
    consumer, seen = FakeConsumer(), []
    tasks = runner(consumer, [])

    async def apply(batches: Any) -> BatchReport:
        seen.append(set(tasks.applying))
        return BatchReport()

    tasks.apply = apply
    await tasks.add([record("claims", 0, 1), record("notes", 0, 2), record("acks", 0, 3)])
    assert seen == [{0}] and tasks.applying == set() and tasks.unsure == set()

    async def fails(batches: Any) -> BatchReport:
        raise asyncio.CancelledError  # shutting down in the middle of it

    tasks.apply = fails
    with pytest.raises(asyncio.CancelledError):
        await tasks.add([record("claims", 1, 4), record("notes", 1, 5), record("acks", 1, 6)])
    assert tasks.applying == set() and tasks.unsure == {0}
