"""A task's inputs merged by event time (engine/tasks.py): what waits for a quiet input, and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.service import RawEvent
from engine.tasks import TaskInputs, merged

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
TOPICS = ["claims", "notes", "acks"]


def record(topic: str, offset: int, minutes: int) -> RawEvent:
    return RawEvent(b"{}", None, f"{topic}/0/{offset}", topic, 0, offset, at=T0 + timedelta(minutes=minutes))


def order(raws: list[RawEvent]) -> list[str]:
    return [r.origin for r in raws]


def test_an_empty_input_is_waited_for_until_the_idle_allowance_runs_out() -> None:
    inputs = TaskInputs(TOPICS)
    inputs.add("notes", record("notes", 0, 5), now=100.0)
    assert inputs.take(now=101.0, idle_seconds=2.0) == []  # claims and acks might still bring an earlier time
    assert inputs.next_wait(101.0, 2.0) == 1.0
    assert order(inputs.take(now=102.0, idle_seconds=2.0)) == ["notes/0/0"]
    assert inputs.went_on == 2  # without claims, and without acks
    assert inputs.passed == {"claims": 1, "acks": 1}


def test_an_input_behind_in_the_broker_is_waited_for_without_limit() -> None:
    inputs = TaskInputs(TOPICS)
    inputs.add("notes", record("notes", 0, 5), now=100.0)
    assert inputs.take(now=10_000.0, idle_seconds=2.0, behind=frozenset({"claims"})) == []


def test_inputs_merge_by_event_time_and_an_input_past_a_time_is_not_waited_for() -> None:
    inputs = TaskInputs(TOPICS)
    for topic, offset, minutes in [("claims", 0, 1), ("claims", 1, 9), ("notes", 0, 3), ("acks", 0, 7)]:
        inputs.add(topic, record(topic, offset, minutes), now=100.0)
    # claims at 1 and notes at 3 go; acks at 7 waits: notes is empty and showed only 3.
    assert order(inputs.take(now=100.0, idle_seconds=2.0)) == ["claims/0/0", "notes/0/0"]
    inputs.add("notes", record("notes", 1, 12), now=100.5)
    # notes showed 12: acks at 7 goes; claims at 9 waits for acks (empty, showed 7).
    assert order(inputs.take(now=100.5, idle_seconds=2.0)) == ["acks/0/0"]
    inputs.add("acks", record("acks", 1, 10), now=100.6)
    assert order(inputs.take(now=100.6, idle_seconds=2.0)) == ["claims/0/1"]


def test_records_read_again_replace_what_was_queued_and_what_it_showed() -> None:
    """A rebalance makes the consumer read a partition again from an earlier offset: the queue drops what
    comes again, and the input no longer counts as past the time of records it no longer holds."""
    inputs = TaskInputs(TOPICS)
    inputs.add("acks", record("acks", 0, 10), now=100.0)
    inputs.add("acks", record("acks", 1, 20), now=100.0)
    inputs.add("acks", record("acks", 0, 10), now=101.0)  # read again from offset 0
    assert order(list(inputs.queues["acks"])) == ["acks/0/0"]
    inputs.queues["acks"].clear()
    inputs.arrived["acks"].clear()
    inputs.add("notes", record("notes", 0, 30), now=101.0)
    inputs.add("claims", record("claims", 0, 15), now=101.0)
    # Had acks kept showing 20, a claim at 15 would go at once, before the acknowledgement at 20 came again
    # with whatever lies between.
    assert inputs.take(now=101.5, idle_seconds=2.0, behind=frozenset({"acks"})) == []


def test_replay_interleaves_tasks_by_event_time() -> None:
    a, b = TaskInputs(TOPICS), TaskInputs(TOPICS)
    a.add("claims", record("claims", 0, 5))
    a.add("notes", record("notes", 0, 1))
    b.add("claims", record("claims", 1, 3))
    assert [(task, raw.origin) for task, raw in merged({0: a, 1: b})] == [
        (0, "notes/0/0"),
        (1, "claims/0/1"),
        (0, "claims/0/0"),
    ]


def test_an_input_that_runs_dry_while_taking_is_asked_about_before_going_on_without_it() -> None:
    """`behind` was worked out before the call, for the inputs empty then; an input emptied by the call itself
    (its partition paused, or simply not fetched further yet) may have records in the broker: stop there."""
    inputs = TaskInputs(TOPICS)
    inputs.add("notes", record("notes", 0, 1), now=100.0)
    inputs.add("claims", record("claims", 0, 5), now=100.0)
    inputs.add("acks", record("acks", 0, 9), now=100.0)
    # Long after the idle allowance: notes at 1 goes; claims at 5 would go on without notes, which ran dry
    # in this very call.
    assert order(inputs.take(now=200.0, idle_seconds=2.0)) == ["notes/0/0"]
    # Asked again (the broker has nothing more of notes): claims goes on without it, then acks.
    assert order(inputs.take(now=200.0, idle_seconds=2.0)) == ["claims/0/0"]
    assert order(inputs.take(now=200.0, idle_seconds=2.0)) == ["acks/0/0"]


def test_replay_puts_an_acknowledgement_naming_only_a_notification_after_a_claim_of_its_time() -> None:
    """Replay holds such an acknowledgement in task -1 until its notification's task is known; among equal event
    times it must still come after claims and notes, as serve's merge inside that task puts it."""
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    topics = ["claims", "notes", "acks", "reviews"]
    unresolved, task3 = TaskInputs(topics), TaskInputs(topics)
    unresolved.add("acks", RawEvent(b"", None, "ack", at=at))
    task3.add("claims", RawEvent(b"", None, "claim", at=at))
    task3.add("notes", RawEvent(b"", None, "later note", at=at.replace(minute=1)))
    assert [(task, raw.origin) for task, raw in merged({-1: unresolved, 3: task3})] == [
        (3, "claim"),
        (-1, "ack"),
        (3, "later note"),
    ]
