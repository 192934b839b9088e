"""Publish ingested events to Kafka: ClaimDenied keyed by the rendering provider's NPI, NoteSigned by the author's.

Topics and bootstrap servers come from the engine's settings (DOCLOOP_TOPIC_CLAIMS_DENIED, DOCLOOP_TOPIC_NOTES_SIGNED,
DOCLOOP_KAFKA_BOOTSTRAP), and so do the connection's security settings (DOCLOOP_KAFKA_SECURITY_PROTOCOL, SASL and TLS:
see engine/kafka_security.py). acks=all: an event counts as published only once every in-sync replica has it.
Event ids are derived from the input, so publishing a file again is safe: the engine drops the repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from engine.ingest.common import IngestedEvent
from schemas import ClaimDenied


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap: str
    claims_denied_topic: str
    notes_signed_topic: str
    # aiokafka connection options for TLS and SASL ({} for PLAINTEXT); they may hold the SASL password.
    connection_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls) -> KafkaTarget:
        from engine.kafka_security import KafkaSecurity
        from engine.settings import Settings

        settings = Settings()
        return cls(
            settings.kafka_bootstrap,
            settings.topic_claims_denied,
            settings.topic_notes_signed,
            KafkaSecurity.from_settings(settings).aiokafka_kwargs(),
        )

    def route(self, event: IngestedEvent) -> tuple[str, bytes]:
        if isinstance(event, ClaimDenied):
            return self.claims_denied_topic, event.rendering_provider.npi.encode()
        return self.notes_signed_topic, event.author.npi.encode()


async def publish(
    events: Sequence[IngestedEvent], target: KafkaTarget, producer_factory: Callable[..., Any] = AIOKafkaProducer
) -> int:
    """Send every event and wait for the broker to acknowledge each one; returns how many were sent."""
    producer = producer_factory(bootstrap_servers=target.bootstrap, acks="all", **target.connection_options)
    await producer.start()
    try:
        deliveries = []
        for event in events:
            topic, key = target.route(event)
            deliveries.append(await producer.send(topic, value=event.model_dump_json().encode(), key=key))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return len(events)
