"""Hostile input through `docloop serve` on the real Kafka and PostgreSQL (issue #10): every hostile record
reaches the DLQ unchanged with a reason naming the field, the valid records around them are processed, and
serve keeps running."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Stack
from tests.support.events import claim
from tests.support.hostile import PROVIDER, SECRET, corpus, tried, valid_events

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_hostile_records_go_to_the_dlq_and_serve_keeps_processing(stack: Stack) -> None:
    stack.single_topic, stack.partitions = True, 1  # one partition: the hostile records sit between valid ones
    cases = corpus()
    valid = valid_events()
    records: list[bytes] = []
    step = len(cases) // len(valid) + 1
    for index, value in enumerate(valid):
        records += [value] + [case.raw for case in cases[index * step : (index + 1) * step]]
    records += [case.raw for case in cases[len(valid) * step :]]
    stack.start()
    tried("serve", len(cases))
    await stack.publish(records, key_for={index: PROVIDER.encode() for index in range(len(records))})
    await stack.wait_until_applied(len(valid))

    dead = await stack.read("dlq", len(cases))
    reasons = {value: headers["docloop-reason"].decode() for _, value, headers in dead}
    assert set(reasons) == {case.raw for case in cases}, "every hostile record, unchanged, and nothing else"
    for case in cases:
        assert case.where in reasons[case.raw], (case.name, reasons[case.raw])
        assert SECRET not in reasons[case.raw]
        if case.value is not None:
            assert case.value not in reasons[case.raw]
    assert all(key == PROVIDER.encode() for key, _, _ in dead)

    opened = [json.loads(value) for _, value, _ in await stack.read("notifications", 2)]
    assert {(m["kind"], m["audience"]) for m in opened} >= {
        ("pattern_opened", "clinician"),
        ("pattern_opened", "billing"),
    }

    # Still serving: one more event after all that is applied too.
    assert stack.processes[0].poll() is None
    later = claim("ok-after", occurred_at="2026-02-05T09:00:00Z", service_date="2026-01-09", provider=PROVIDER)
    await stack.publish([json.dumps(later)], key_for={0: PROVIDER.encode()})
    await stack.wait_until_applied(len(valid) + 1)

    assert stack.stop(stack.processes[0]) == 0
    assert await stack.committed_lag() == 0
    log = stack.log_text()
    assert SECRET not in log
    assert "engine error" not in log and "Traceback" not in log
