"""Consumer runtime on FastStream: effect and inbox in one transaction, then the offset.

FastStream's Kafka default (ack first, auto commit) is at-most-once; every subscriber here uses
NACK_ON_ERROR, so the offset is committed only after the handler returned, i.e. after the
effect's transaction committed. A failing event is retried with backoff, then parked on
`<topic>.dlq` and the partition moves on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from carebridge_contracts import BaseEvent, ContractError, Envelope, dlq_topic, parse
from carebridge_contracts.registry import topic_for
from carebridge_shared import inbox
from carebridge_shared.correlation import correlation_scope
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    EVENTS_APPLIED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    HANDLER_FAILURES,
)

log = get_logger(__name__)

E = TypeVar("E", bound=BaseEvent)

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

# Connection trouble is not the event's fault: retry it without spending attempts.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


@dataclass(frozen=True)
class EventContext:
    """What a handler gets besides its typed event. `conn` is inside the effect transaction."""

    envelope: Envelope
    conn: Connection
    topic: str
    partition: int
    offset: int


Handler = Callable[[Any, EventContext], Awaitable[None]]
EffectHook = Callable[[Envelope], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.initial_backoff * 2 ** max(attempt - 1, 0), self.max_backoff))


class _AssignmentTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Knows when the subscriber is ready to receive: it joined its group and the starting
    position of every assigned partition is resolved (with offset reset "latest" a position
    is only fixed on the first fetch; a record published before that would be skipped)."""

    def __init__(self, group_id: str, topic: str) -> None:
        self.joined = asyncio.Event()
        self.consumer: Callable[[], Any] = lambda: None
        self._group_id = group_id
        self._topic = topic
        self._resolving: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Not ready again until the new assignment's positions are resolved.
        self.joined.clear()
        if self._resolving is not None:
            self._resolving.cancel()
        log.info("partitions_revoked", group=self._group_id, partitions=len(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info(
            "partitions_assigned",
            group=self._group_id,
            topic=self._topic,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )
        # Resolving positions needs the rebalance to finish first: do it outside the callback.
        self._resolving = asyncio.create_task(self._resolve_positions(list(assigned)))

    async def _resolve_positions(self, assigned: list[Any]) -> None:
        consumer = self.consumer()
        try:
            for partition in assigned if consumer is not None else []:
                await consumer.position(partition)
        except Exception as exc:  # a new rebalance superseded this one; it will set joined
            log.info("positions_not_resolved", group=self._group_id, error=type(exc).__name__)
            return
        self.joined.set()


class ConsumerRuntime:
    """Subscribes one consumer group to the topics of the events it registered handlers for."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        pool: asyncpg.Pool,
        group_id: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        retry: RetryPolicy | None = None,
        graceful_timeout: float = 15.0,
        after_effect: EffectHook | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    ) -> None:
        self.group_id = group_id
        self._auto_offset_reset = auto_offset_reset
        self._trackers: list[_AssignmentTracker] = []
        self._pool = pool
        self._retry = retry or RetryPolicy()
        self._producer_factory = producer_factory
        self._dlq_producer: AIOKafkaProducer | None = None
        self._after_effect = after_effect
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._stopping = asyncio.Event()
        self.broker = KafkaBroker(
            # FastStream takes a string for ONE host: split "a:9092,b:9092" into the list
            bootstrap_list(bootstrap_servers),
            client_id=f"{group_id}-{socket.gethostname()}",
            graceful_timeout=graceful_timeout,
            logger=None,
        )
        self.started = False

    @property
    def joined(self) -> bool:
        """Every subscription has joined its consumer group (ready to receive)."""
        return self.started and all(t.joined.is_set() for t in self._trackers)

    async def until_joined(self) -> None:
        """Wait until every subscription can receive (see `joined`)."""
        for tracker in self._trackers:
            await tracker.joined.wait()

    def on(
        self, event_cls: type[E]
    ) -> Callable[[Callable[[E, EventContext], Awaitable[None]]], Handler]:
        """Register the handler of one event type (any version of it reaching this group)."""

        def register(fn: Callable[[E, EventContext], Awaitable[None]]) -> Handler:
            topic = str(topic_for(event_cls))
            key = (topic, event_cls.event_type)
            if key in self._handlers:
                raise ValueError(f"{self.group_id} already handles {event_cls.event_type}")
            self._handlers[key] = fn
            return fn

        return register

    @property
    def topics(self) -> list[str]:
        return sorted({topic for topic, _ in self._handlers})

    async def start(self) -> None:
        self._dlq_producer = self._producer_factory()
        await self._dlq_producer.start()
        if self.topics:
            self._subscribe(self.topics)
        await self.broker.start()
        self.started = True
        log.info("consumer_started", group=self.group_id, topics=self.topics)

    async def stop(self) -> None:
        """Let the in-flight event finish and commit (bounded by graceful_timeout), then close."""
        self._stopping.set()
        self.started = False
        await self.broker.stop()
        if self._dlq_producer is not None:
            await self._dlq_producer.stop()
            self._dlq_producer = None
        log.info("consumer_stopped", group=self.group_id)

    def _subscribe(self, topics: list[str]) -> None:
        # One consumer for all of the group's topics: one join per start, one rebalance per
        # membership change (a consumer per topic would rebalance the group once per topic).
        tracker = _AssignmentTracker(self.group_id, ",".join(topics))
        self._trackers.append(tracker)
        subscriber = self.broker.subscriber(
            *topics,
            group_id=self.group_id,
            auto_offset_reset=self._auto_offset_reset,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            listener=tracker,
        )
        tracker.consumer = lambda: subscriber.consumer

        async def consume(message: KafkaMessage) -> None:
            await self.process(message.raw_message)

        subscriber(consume)

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one record at least once and its effect exactly once; never raise for bad data."""
        try:
            envelope, event = parse(record.value or b"")
        except ContractError as exc:
            await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts=1)
            return
        handler = self._handlers.get((record.topic, envelope.type))
        if handler is None:
            return  # a known event this group does not care about
        with correlation_scope(envelope.correlation_id, envelope.event_id):
            await self._apply(record, envelope, event, handler)

    async def _apply(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        event: BaseEvent,
        handler: Handler,
    ) -> None:
        attempts = 0
        transient_attempts = 0
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    fresh = await inbox.claim(
                        conn,
                        self.group_id,
                        envelope.event_id,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                    if fresh:
                        context = EventContext(
                            envelope, conn, record.topic, record.partition, record.offset
                        )
                        await handler(event, context)
                if fresh:
                    EVENTS_APPLIED.labels(self.group_id, envelope.type).inc()
                    log.info("event_applied", type=envelope.type, event_id=str(envelope.event_id))
                else:
                    EVENTS_DUPLICATE.labels(self.group_id).inc()
                    log.info("event_duplicate", type=envelope.type, event_id=str(envelope.event_id))
                if self._after_effect is not None:
                    await self._after_effect(envelope)
                return
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                transient_attempts += 1
                HANDLER_FAILURES.labels(self.group_id, "true").inc()
                if self._stopping.is_set():
                    raise  # not committed: redelivered after restart
                delay = self._retry.delay(transient_attempts)
                log.warning("event_transient_failure", error=type(exc).__name__, delay_s=delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                attempts += 1
                HANDLER_FAILURES.labels(self.group_id, "false").inc()
                if attempts >= self._retry.max_attempts:
                    await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts)
                    return
                delay = self._retry.delay(attempts)
                log.warning(
                    "event_failed_will_retry",
                    type=envelope.type,
                    attempt=attempts,
                    error=type(exc).__name__,
                    delay_s=delay,
                )
                await asyncio.sleep(delay)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: str, attempts: int
    ) -> None:
        if self._dlq_producer is None:
            raise RuntimeError("consumer runtime is not started")
        headers = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
        headers += [
            (DLQ_ORIGINAL_TOPIC, record.topic.encode()),
            (DLQ_ORIGINAL_PARTITION, str(record.partition).encode()),
            (DLQ_ORIGINAL_OFFSET, str(record.offset).encode()),
            (DLQ_CONSUMER_GROUP, self.group_id.encode()),
            (DLQ_ERROR, error[:500].encode()),
            (DLQ_ATTEMPTS, str(attempts).encode()),
        ]
        target = dlq_topic(record.topic)
        await self._dlq_producer.send_and_wait(
            target, value=record.value, key=record.key, headers=headers
        )
        EVENTS_DEAD_LETTERED.labels(self.group_id).inc()
        log.error(
            "event_dead_lettered",
            dlq_topic=target,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=error.split(":", 1)[0],
        )


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """``"a:9092, b:9092"`` as ``["a:9092", "b:9092"]`` (KAFKA_BOOTSTRAP_SERVERS lists brokers)."""
    return [host.strip() for host in bootstrap_servers.split(",") if host.strip()]


def dlq_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """The dead-letter headers of a record read from a `.dlq` topic."""
    return {k: v.decode() for k, v in (record.headers or ()) if k in DLQ_HEADERS}
