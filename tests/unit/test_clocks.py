"""engine/clocks.py: which clock values the department stage may take as settled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.clocks import ClockHistory

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_clock_value_settles_an_allowance_after_it_was_first_seen() -> None:
    now = [100.0]
    history = ClockHistory(2.0, clock=lambda: now[0])
    history.observe({0: at(10), 1: None})
    assert history.settled(before=101.9) is None
    now[0] = 101.0
    history.observe({0: at(20), 1: at(15)})  # seen later: they settle later
    assert history.settled(before=102.0) == at(10)
    assert history.settled(before=103.0) == at(20)  # the furthest settled value over all tasks


def test_a_value_seen_again_keeps_when_it_was_first_seen() -> None:
    now = [100.0]
    history = ClockHistory(2.0, clock=lambda: now[0])
    history.observe({0: at(10)})
    now[0] = 101.5
    history.observe({0: at(10)})
    assert history.settled(before=102.0) == at(10)


def test_settled_is_not_later_than_what_was_seen_before_the_broker_was_asked() -> None:
    now = [100.0]
    history = ClockHistory(0.0, clock=lambda: now[0])
    history.observe({0: at(10)})
    now[0] = 100.5
    history.observe({0: at(30)})  # read after the broker was asked at 100.2
    assert history.settled(before=100.2) == at(10)


def test_a_value_settles_an_allowance_after_its_record_reached_the_broker_however_late_it_was_seen() -> None:
    now = [100.0]
    history = ClockHistory(2.0, clock=lambda: now[0])
    history.observe({0: at(5)})  # seen at 100
    now[0] = 103.0
    history.observe({0: at(10)})  # the stage read the store before the task told when its record came
    history.observe_at(0, at(10), when=99.5)  # its record reached the broker at 99.5 (it waited for quiet inputs)
    history.observe_at(0, at(8), when=99.0)  # smaller: moot
    assert history.settled(before=101.5) == at(10)  # not 105.0: the allowance ran from the broker
    history.observe_at(0, at(12), when=104.0)
    assert history.settled(before=105.9) == at(10)
    assert history.settled(before=106.0) == at(12)
