"""Publishing ingested events: the right topic, the provider's NPI as key, acks=all, and the event as JSON."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.ingest.common import IngestOptions, ProviderDirectory, ProviderLookup
from engine.ingest.fhir import read_fhir
from engine.ingest.publish import KafkaTarget, publish
from schemas import ClaimDenied, NoteSigned, decode_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ingest"
TARGET = KafkaTarget("broker:9092", "claims.denied.test", "notes.signed.test")


class FakeProducer:
    """Stands in for AIOKafkaProducer: records what would have gone to the broker."""

    instances: list[FakeProducer] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.started = self.stopped = False
        self.fail_on: int | None = None
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        if self.fail_on is not None and len(self.sent) == self.fail_on:
            raise ConnectionError("broker went away")
        self.sent.append((topic, value, key))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def stop(self) -> None:
        self.stopped = True


def events() -> list[ClaimDenied | NoteSigned]:
    options = IngestOptions(providers=ProviderLookup(directory=ProviderDirectory.from_csv(FIXTURES / "providers.csv")))
    found = []
    for name in ("claims_bundle.json", "notes.ndjson"):
        found += read_fhir(FIXTURES / name, options, name).events
    return found


def test_each_event_goes_to_its_topic_keyed_by_the_provider_npi_with_acks_all() -> None:
    FakeProducer.instances.clear()
    sample = events()

    sent = asyncio.run(publish(sample, TARGET, producer_factory=FakeProducer))

    (producer,) = FakeProducer.instances
    assert producer.config == {"bootstrap_servers": "broker:9092", "acks": "all"}
    assert producer.started and producer.stopped
    assert sent == len(sample) == 5
    assert [(topic, key) for topic, _, key in producer.sent] == [
        ("claims.denied.test", b"1234567893"),
        ("claims.denied.test", b"1245319599"),
        ("notes.signed.test", b"1234567893"),
        ("notes.signed.test", b"1234567893"),
        ("notes.signed.test", b"1245319599"),
    ]
    assert [decode_event(value) for _, value, _ in producer.sent] == sample


def test_the_producer_is_stopped_when_sending_fails() -> None:
    FakeProducer.instances.clear()

    def failing(**config: Any) -> FakeProducer:
        producer = FakeProducer(**config)
        producer.fail_on = 1
        return producer

    with pytest.raises(ConnectionError):
        asyncio.run(publish(events(), TARGET, producer_factory=failing))

    (producer,) = FakeProducer.instances
    assert producer.stopped and len(producer.sent) == 1


def test_topics_and_bootstrap_come_from_the_docloop_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCLOOP_KAFKA_BOOTSTRAP", "kafka-1:9093")
    monkeypatch.setenv("DOCLOOP_TOPIC_CLAIMS_DENIED", "claims.denied.site-a")
    monkeypatch.setenv("DOCLOOP_TOPIC_NOTES_SIGNED", "notes.signed.site-a")

    assert KafkaTarget.from_settings() == KafkaTarget("kafka-1:9093", "claims.denied.site-a", "notes.signed.site-a")


def test_topics_default_to_the_contract_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOCLOOP_KAFKA_BOOTSTRAP", "DOCLOOP_TOPIC_CLAIMS_DENIED", "DOCLOOP_TOPIC_NOTES_SIGNED"):
        monkeypatch.delenv(name, raising=False)

    assert KafkaTarget.from_settings() == KafkaTarget("localhost:9092", "claims.denied.v1", "notes.signed.v1")
