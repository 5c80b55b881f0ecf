"""Dead letters: a record that cannot be applied is parked on `<topic>.dlq`, with headers that
say where it came from and why, and the partition moves on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaProducer

from carebridge_contracts import dlq_topic
from carebridge_shared.consumer.records import Record
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import EVENTS_DEAD_LETTERED, MESSAGES_PUBLISHED, note_error

log = get_logger(__name__)

# Dead-letter headers, next to the original message's own headers.
DLQ_ORIGINAL_TOPIC = "dlq-original-topic"
DLQ_ORIGINAL_PARTITION = "dlq-original-partition"
DLQ_ORIGINAL_OFFSET = "dlq-original-offset"
DLQ_CONSUMER_GROUP = "dlq-consumer-group"
DLQ_ERROR = "dlq-error"
DLQ_ATTEMPTS = "dlq-attempts"
DLQ_HEADERS = (
    DLQ_ORIGINAL_TOPIC,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_OFFSET,
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
    DLQ_ATTEMPTS,
)


class DeadLetters(Protocol):
    """Where a consumer parks what it cannot apply."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def park(self, record: Record, error: str, attempts: int) -> None: ...


class DeadLetterPublisher:
    """Publishes parked records to `<topic>.dlq`: the original key, value and headers, plus
    the `DLQ_*` headers."""

    def __init__(self, group_id: str, producer_factory: Callable[[], AIOKafkaProducer]) -> None:
        self._group_id = group_id
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = self._producer_factory()
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def park(self, record: Record, error: str, attempts: int) -> None:
        if self._producer is None:
            raise RuntimeError("consumer runtime is not started")
        target = dlq_topic(record.topic)
        # A record with neither key nor value (some clients send one) is parked with an
        # empty value: the producer refuses to send nothing at all.
        value = b"" if record.value is None and record.key is None else record.value
        await self._producer.send_and_wait(
            target, value=value, key=record.key, headers=self._headers(record, error, attempts)
        )
        EVENTS_DEAD_LETTERED.labels(self._group_id).inc()
        MESSAGES_PUBLISHED.labels(self._group_id, target).inc()
        note_error("dead_letter", error.split(":", 1)[0])
        log.error(
            "event_dead_lettered",
            dlq_topic=target,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=error.split(":", 1)[0],
        )

    def _headers(self, record: Record, error: str, attempts: int) -> list[tuple[str, bytes]]:
        headers = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
        return [
            *headers,
            (DLQ_ORIGINAL_TOPIC, record.topic.encode()),
            (DLQ_ORIGINAL_PARTITION, str(record.partition).encode()),
            (DLQ_ORIGINAL_OFFSET, str(record.offset).encode()),
            (DLQ_CONSUMER_GROUP, self._group_id.encode()),
            (DLQ_ERROR, error[:500].encode()),
            (DLQ_ATTEMPTS, str(attempts).encode()),
        ]


def dlq_headers(record: Record) -> dict[str, str]:
    """The dead-letter headers of a record read from a `.dlq` topic."""
    return {k: v.decode() for k, v in (record.headers or ()) if k in DLQ_HEADERS}
