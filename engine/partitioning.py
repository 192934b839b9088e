"""Which task an event belongs to: Kafka's default partitioner on its key, the provider NPI.

All inbound topics are keyed by provider NPI and have the same partition count, so one provider's denials,
notes and acknowledgements land in the same partition number of each topic: that number is the provider's
*task*. `docloop replay --partitions N` computes the same, so replay and serve agree on any partitioning.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from schemas import ClaimDenied, FeedbackAcknowledged, FeedbackReviewed, InboundEvent, NoteSigned

# The inbound topics a task merges, in the order that breaks ties between events of equal time.
INPUTS = ("claims", "notes", "acks", "reviews")


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (murmur2, as the Java and aiokafka producers do)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def provider_of(event: InboundEvent) -> str | None:
    """The NPI an event is keyed by; None for an acknowledgement or a review that names only a notification id
    (the caller finds that notification's provider)."""
    if isinstance(event, ClaimDenied):
        return event.rendering_provider.npi
    if isinstance(event, NoteSigned):
        return event.author.npi
    assert isinstance(event, FeedbackAcknowledged | FeedbackReviewed)
    return event.pattern_key.provider_npi if event.pattern_key else None


def input_of(event: InboundEvent) -> str:
    if isinstance(event, ClaimDenied):
        return "claims"
    if isinstance(event, NoteSigned):
        return "notes"
    return "reviews" if isinstance(event, FeedbackReviewed) else "acks"


def task_of_npi(npi: str, partitions: int) -> int:
    return partition_for(npi.encode(), partitions)
