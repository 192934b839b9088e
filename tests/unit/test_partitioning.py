"""Reviews are co-partitioned with the other inbound topics: keyed by the pattern's provider NPI."""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from engine.consumer import tasks_behind
from engine.partitioning import INPUTS, input_of, provider_of, task_of_npi
from engine.replay import inbound_topic_names
from engine.serve import Service, inbound_topics, partition_counts, timestamp_types
from engine.settings import Settings
from schemas import decode_event
from tests.support.events import ack, claim, npi, review

A = npi("100000001")


def test_a_review_is_its_own_input_and_goes_to_its_patterns_provider_task() -> None:
    reviewed = decode_event(json.dumps(review("r", occurred_at="2026-02-20T09:00:00Z", provider=A, outcome="upheld")))
    denied = decode_event(
        json.dumps(claim("c", occurred_at="2026-02-20T09:00:00Z", service_date="2026-02-01", provider=A))
    )
    assert input_of(reviewed) == "reviews" and "reviews" in INPUTS
    assert provider_of(reviewed) == A
    assert task_of_npi(provider_of(reviewed) or "", 6) == task_of_npi(provider_of(denied) or "", 6)


def test_a_review_naming_only_a_notification_waits_for_that_notifications_provider() -> None:
    reviewed = decode_event(
        json.dumps(review("r", occurred_at="2026-02-20T09:00:00Z", notification_id="n-1", outcome="withdrawn"))
    )
    answered = decode_event(json.dumps(ack("a", occurred_at="2026-02-20T09:00:00Z", notification_id="n-1")))
    assert provider_of(reviewed) is None and provider_of(answered) is None
    assert input_of(answered) == "acks"


def test_serve_and_replay_read_the_reviews_topic_among_the_co_partitioned_inputs() -> None:
    settings = Settings(topic_reviews="reviews.topic")
    assert "reviews.topic" in inbound_topics(settings)  # subscribed, declared and in the partition-count check
    assert inbound_topic_names(settings)["reviews"] == "reviews.topic"
    assert list(inbound_topic_names(settings)) == list(INPUTS)  # the tie-break order serve uses too


class SettlingMetadata:
    """Describes a topic created a moment ago as the broker may: no leader yet (error 5), no partitions."""

    def __init__(self, settling_answers: int) -> None:
        self.settling_answers = settling_answers
        self.asked = 0

    async def __call__(self, topics: list[str]) -> list[dict[str, Any]]:
        self.asked += 1
        if self.asked <= self.settling_answers:
            return [{"topic": t, "error_code": 5, "partitions": []} for t in topics]
        return [{"topic": t, "error_code": 0, "partitions": [{"partition": p} for p in range(6)]} for t in topics]


async def test_a_topic_just_created_is_asked_again_not_taken_for_one_with_no_partitions() -> None:
    metadata = SettlingMetadata(settling_answers=2)
    assert await partition_counts(metadata, ["events"]) == {"events": 6}
    assert metadata.asked == 3


async def test_metadata_that_never_settles_gives_its_count_after_the_wait() -> None:
    metadata = SettlingMetadata(settling_answers=1_000)
    assert await partition_counts(metadata, ["events"], wait_seconds=0.3) == {"events": 0}


def test_a_poll_takes_up_to_a_full_transaction_for_every_task() -> None:
    # One transaction's worth shared by six tasks made each task's transaction a sixth of it.
    service = Service(Settings(topic_partitions=4, batch_max_records=250), database=None)
    assert service.subscriber.max_records == 1000


async def test_timestamp_types_reads_what_the_broker_describes_and_skips_what_it_refuses() -> None:
    """Per topic its message.timestamp.type; a topic the broker answers with an error (unknown, or an ACL that
    forbids DescribeConfigs) is left out, and a request that fails leaves the answer empty."""

    class Admin:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        async def describe_configs(self, resources: list[Any]) -> list[Any]:
            if self.fail:
                raise ConnectionError("broker gone")
            entries = {"a": "LogAppendTime", "b": "CreateTime"}
            return [
                SimpleNamespace(
                    resources=[
                        (0, "", 2, r.name, [("message.timestamp.type", entries[r.name], False, 5, False, [])])
                        if r.name in entries
                        else (29, "denied", 2, r.name, [])
                        for r in resources
                    ]
                )
            ]

    found = await timestamp_types(Admin(fail=False), ["a", "b", "secret"])  # type: ignore[arg-type]
    assert found == {"a": "LogAppendTime", "b": "CreateTime"}
    assert await timestamp_types(Admin(fail=True), ["a"]) == {}  # type: ignore[arg-type]


async def test_a_partition_emptied_by_retention_does_not_hold_its_task_behind(monkeypatch: Any) -> None:
    """claims/1 had 1,000 records, all deleted by retention before this store applied any (a new store on old
    topics): its end offset stays past the stored position (none) for ever. Counted as behind, task 1 held the
    department and routing stages for every task; records there to apply still count."""

    class Offsets:
        async def end_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
            return {tp: {("claims", 1): 1000, ("notes", 1): 1004}.get((tp.topic, tp.partition), 5) for tp in partitions}

        async def beginning_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
            return {tp: 1000 if tp.partition == 1 else 0 for tp in partitions}

    class Database:
        @contextlib.asynccontextmanager
        async def connect(self) -> Any:
            yield None

    async def positions(conn: Any, wanted: Any) -> dict[tuple[str, int], int]:
        return {(topic, p): 5 for topic, p in wanted if p == 0}  # task 0 applied all; task 1 nothing yet

    monkeypatch.setattr("engine.consumer.repository.positions", positions)
    assert await tasks_behind(Offsets(), Database(), ["claims", "notes"], 2) == {1}  # notes/1: 4 to apply

    async def applied(conn: Any, wanted: Any) -> dict[tuple[str, int], int]:
        return {**{(topic, p): 5 for topic, p in wanted if p == 0}, ("notes", 1): 1004}

    monkeypatch.setattr("engine.consumer.repository.positions", applied)
    assert await tasks_behind(Offsets(), Database(), ["claims", "notes"], 2) == set()
