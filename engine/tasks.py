"""A task's inputs, merged in event-time order: the same order in `serve` (records arriving) and `replay`.

A task is one partition number across the inbound topics (all keyed by provider NPI, so a provider's
denials, notes, acknowledgements and reviews share it). Its events are applied in the order a merge by event time
gives: repeatedly the head of an input queue with the smallest (occurred_at, input rank). In replay every
input is complete, so the merge is exact. In serve an input may be empty only for now; taking the smallest
head then could apply an event before an earlier one that is still on its way. So, like Kafka Streams'
`max.task.idle.ms`, the task waits for an empty input: without limit while its partition has records the
consumer has not handed over yet, else until DOCLOOP_TASK_IDLE_MS after the waiting record itself arrived
(so an input whose producer lags the others by less than that is always waited for), and not at all when
that input has already shown a later time (inputs are assumed to be in event-time order per partition, as
an EHR or a clearinghouse publishes them: then nothing earlier can follow).
Invalid records carry no time: at the head of their queue they go first (they only reach the DLQ).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from engine.service import RawEvent
from schemas import InboundEvent, InvalidEvent

Key = tuple[datetime, int]
NO_TIME = datetime.min.replace(tzinfo=UTC)


def merge_key(raw: RawEvent, rank: int) -> Key:
    return (raw.at or NO_TIME, rank)


def event_time(decoded: InboundEvent | InvalidEvent) -> datetime | None:
    return None if isinstance(decoded, InvalidEvent) else decoded.occurred_at.astimezone(UTC)


def with_time(raw: RawEvent, decoded: InboundEvent | InvalidEvent, keep: bool = True) -> RawEvent:
    """The record with its event time (and, with `keep`, its decoding, so it is not decoded twice)."""
    return replace(raw, decoded=decoded if keep else None, at=event_time(decoded))


class TaskInputs:
    """The queues of one task, one per inbound topic (in rank order)."""

    def __init__(self, topics: Sequence[str]) -> None:
        self.rank = {topic: position for position, topic in enumerate(topics)}
        self.queues: dict[str, deque[RawEvent]] = {topic: deque() for topic in topics}
        self.arrived: dict[str, deque[float]] = {topic: deque() for topic in topics}  # when each record came
        self.seen: dict[str, Key | None] = dict.fromkeys(topics)  # the latest key each input has shown
        self.went_on = 0  # records applied without waiting any longer for a quiet input
        self.passed: Counter[str] = Counter()  # of those, per input that was not waited for any longer

    def add(self, topic: str, raw: RawEvent, now: float = 0.0) -> None:
        queue, arrived = self.queues[topic], self.arrived[topic]
        if raw.offset is not None and queue and queue[-1].offset is not None and raw.offset <= queue[-1].offset:
            # The consumer reads this partition again from an earlier position (a rebalance reset it): what
            # it will hand over again replaces what was queued from there on.
            while queue and queue[-1].offset is not None and queue[-1].offset >= raw.offset:
                queue.pop()
                arrived.pop()
            # What those records showed of this input's time is not shown any more: until they come again, the
            # merge must not take this input as past their time.
            self.seen[topic] = merge_key(queue[-1], self.rank[topic]) if queue else None
        queue.append(raw)
        arrived.append(now)
        key = merge_key(raw, self.rank[topic])
        if key[0] is not NO_TIME and (self.seen[topic] is None or key > self.seen[topic]):  # type: ignore[operator]
            self.seen[topic] = key

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def take(
        self,
        now: float,
        idle_seconds: float,
        exhausted: bool = False,
        behind: frozenset[str] = frozenset(),
        keys: list[Key] | None = None,
    ) -> list[RawEvent]:
        """Every record that may be applied now, in merge order (`exhausted`: no input will grow again;
        `behind`: empty inputs known to have records on their way, fetched but not yet here: wait for those
        however long it takes, as Kafka Streams does for a partition with known lag; `keys` hears each taken
        record's merge key)."""
        taken: list[RawEvent] = []
        emptied: set[str] = set()  # ran dry in this call: whether the broker has more of it is not known yet
        while True:
            heads = [(merge_key(q[0], self.rank[topic]), topic) for topic, q in self.queues.items() if q]
            if not heads:
                return taken
            key, topic = min(heads)
            if not exhausted and key[0] is not NO_TIME:
                for other, queue in self.queues.items():
                    if queue or other == topic:
                        continue
                    shown = self.seen[other]
                    if shown is not None and shown > key:
                        continue  # that input is already past this time
                    if other in emptied or other in behind or now - self.arrived[topic][0] < idle_seconds:
                        return taken  # wait for it a little longer (or, for one that ran dry, ask the broker)
                    self.went_on += 1  # the allowance for a quiet input ran out: go on without it
                    self.passed[other] += 1
            taken.append(self.queues[topic].popleft())
            self.arrived[topic].popleft()
            if keys is not None:
                keys.append(key)
            if not self.queues[topic]:
                emptied.add(topic)

    def overdue(self, now: float, idle_seconds: float) -> bool:
        """Whether the head of any input has waited out its allowance: take() may then go on without a quiet
        input for it once the heads before it have gone, so the broker is asked about the empty inputs first."""
        return any(q and now - self.arrived[topic][0] >= idle_seconds for topic, q in self.queues.items())

    def next_wait(self, now: float, idle_seconds: float) -> float | None:
        """Seconds until a waiting record may go even if its empty inputs stay empty (None: nothing waits)."""
        heads = [(merge_key(q[0], self.rank[topic]), topic) for topic, q in self.queues.items() if q]
        if not heads:
            return None
        _, topic = min(heads)
        return max(0.0, self.arrived[topic][0] + idle_seconds - now)


def merged(inputs: dict[int, TaskInputs]) -> Iterator[tuple[int, RawEvent]]:
    """Replay: every task's complete inputs, each task in merge order, tasks interleaved by (event time, input
    rank, task): an acknowledgement that names only a notification (replay's task -1 until that is known) then
    comes after a claim or note of the same time, as in the task it turns out to belong to."""
    streams: dict[int, Iterator[tuple[Key, RawEvent]]] = {}
    for task, queue in inputs.items():
        keys: list[Key] = []
        taken = queue.take(0.0, 0.0, exhausted=True, keys=keys)
        streams[task] = iter(zip(keys, taken, strict=True))
    heads: dict[int, tuple[Key, RawEvent]] = {}
    for task, stream in streams.items():
        first = next(stream, None)
        if first is not None:
            heads[task] = first
    while heads:
        task = min(heads, key=lambda t: (heads[t][0], t))
        yield task, heads[task][1]
        following = next(streams[task], None)
        if following is None:
            del heads[task]
        else:
            heads[task] = following
