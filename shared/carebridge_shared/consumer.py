"""Consumer runtime on FastStream: effect and inbox in one transaction, then the offset.

FastStream's Kafka default (ack first, auto commit) is at-most-once; every subscriber here
commits offsets itself (AckPolicy.MANUAL), only of records whose effects' transaction
committed. The commit runs in the background while the next poll is applied (issue 16: an
awaited commit cost ~7 ms per poll); a commit that is lost (crash, rebalance) only means the
records come again, and the inbox drops them. A failure rewinds the partitions to the poll's
first records. A failing event is retried with backoff, then parked on `<topic>.dlq` and the
partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from carebridge_contracts import (
    BaseEvent,
    ContractError,
    Envelope,
    ProducerNotTopicOwner,
    check_producer,
    dlq_topic,
    parse,
    type_from_headers,
)
from carebridge_contracts.registry import topic_for
from carebridge_shared import inbox, tracing
from carebridge_shared.clock import Clock
from carebridge_shared.context import S, ServiceContext
from carebridge_shared.correlation import correlation_scope
from carebridge_shared.db import Connection
from carebridge_shared.kafka import KafkaSecurity, bootstrap_list, env_security
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    CONSUMER_LAG,
    EVENTS_APPLIED,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_PRODUCER_REFUSED,
    HANDLER_DURATION,
    HANDLER_FAILURES,
    HANDLER_RETRIES,
    MESSAGES_CONSUMED,
    MESSAGES_PUBLISHED,
    note_error,
)
from carebridge_shared.outbox import Outbox, Staged

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

# What became of a record (the `outcome` label of the consumer metrics).
APPLIED = "applied"
DUPLICATE = "duplicate"
IGNORED = "ignored"
DEAD_LETTERED = "dead_lettered"

# Records taken per poll. Their offsets are committed once per poll, after their effects: a
# commit is a broker round trip (~7 ms on the dev broker), which, paid per record, held a
# consumer to ~70 events/s (docs/performance.md).
MAX_POLL_RECORDS = 100
# Records applied in one transaction (inbox claims and effects): one commit, so one WAL flush,
# for up to this many events. Bounded, because the first event of a transaction becomes
# visible only when the last is done, and handler locks are held as long.
MAX_RECORDS_PER_TRANSACTION = 25
# A commit that failed while its partitions stayed assigned is tried again after this long.
COMMIT_RETRY_S = 0.5
# An idle poll waits this long for records, then FastStream sleeps as long again: the most an
# idle consumer delays a record that arrives.
IDLE_POLL_MS = 10

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
class EventContext(Generic[S]):
    """One handler call: the event's envelope and record, `conn` inside the effect's
    transaction, and the service's context (settings, outbox, clock, extras)."""

    envelope: Envelope
    conn: Connection
    service: ServiceContext[S]
    topic: str
    partition: int
    offset: int
    headers: Sequence[tuple[str, bytes]] = ()

    @property
    def settings(self) -> S:
        return self.service.settings

    @property
    def outbox(self) -> Outbox:
        return self.service.outbox

    @property
    def clock(self) -> Clock:
        return self.service.clock

    async def publish(self, event: BaseEvent, *, subject: str | None = None) -> Envelope:
        """Stage `event` in this transaction, caused by this event: its correlation id, this
        event as the cause, and the trace of this record's handling."""
        return await self.outbox.add(
            self.conn,
            event,
            subject=subject,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
        )

    def staged(self, event: BaseEvent, *, subject: str | None = None) -> Staged:
        """`event` for `Outbox.add_many`, caused by this one: its correlation id, this event
        as the cause, and the trace this event's record carried."""
        return Staged(
            event,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
            trace=tracing.extract(self.headers),
            subject=subject,
        )


Handler = Callable[[Any, EventContext[Any]], Awaitable[None]]
# A batch handler gets consecutive fresh events of one type, in offset order, all in one
# transaction: it applies their effects set-based (`unnest`, `executemany`) and stages its
# events with `Outbox.add_many([ctx.staged(e) for ...])`, each carrying its own ids.
BatchHandler = Callable[[Sequence[tuple[Any, EventContext[Any]]]], Awaitable[None]]
EffectHook = Callable[[Envelope], Awaitable[None]]
HandlerKey = tuple[str, str]  # (topic, event type)


class Subscriptions(Generic[S]):
    """The handlers of one service, declared at module level like FastAPI's `APIRouter`:

        subscriptions = Subscriptions[BookingSettings]()

        @subscriptions.on(SymptomsWorsened)
        async def symptoms_worsened(event: SymptomsWorsened, ctx: EventContext[...]) -> None:
            ...

    The decorators return the function unchanged; the consumer runtime dispatches to it."""

    def __init__(self) -> None:
        self.handlers: dict[HandlerKey, Handler] = {}
        self.batch_handlers: dict[HandlerKey, BatchHandler] = {}
        self._events: list[type[BaseEvent]] = []

    def on(
        self, event_cls: type[E]
    ) -> Callable[
        [Callable[[E, EventContext[S]], Awaitable[None]]],
        Callable[[E, EventContext[S]], Awaitable[None]],
    ]:
        """Subscribe the handler of one event type (any version of it reaching this group)."""

        def subscribe(
            fn: Callable[[E, EventContext[S]], Awaitable[None]],
        ) -> Callable[[E, EventContext[S]], Awaitable[None]]:
            key = (str(topic_for(event_cls)), event_cls.event_type)
            if key in self.handlers:
                raise ValueError(f"{event_cls.event_type} already has a handler here")
            self.handlers[key] = fn
            self._events.append(event_cls)
            return fn

        return subscribe

    def on_batch(
        self, event_cls: type[E]
    ) -> Callable[
        [Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]]],
        Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]],
    ]:
        """Subscribe the batch handler of one event type (see `BatchHandler`). A record that
        has to be applied on its own (a poison record in its poll, a retry) is handed to it
        as a batch of one."""

        def subscribe(
            fn: Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]],
        ) -> Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]]:
            async def one(event: E, ctx: EventContext[S]) -> None:
                await fn([(event, ctx)])

            self.on(event_cls)(one)
            self.batch_handlers[(str(topic_for(event_cls)), event_cls.event_type)] = fn
            return fn

        return subscribe

    @property
    def events(self) -> tuple[type[BaseEvent], ...]:
        """The event classes given a handler, in the order they were subscribed."""
        return tuple(self._events)

    @property
    def topics(self) -> list[str]:
        return sorted({topic for topic, _ in self.handlers})


Prepared = tuple[ConsumerRecord[bytes, bytes], Envelope, BaseEvent]


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


class _OffsetCommitter:
    """Commits processed offsets in the background: the highest per partition, one commit at
    a time, so commits never go backwards and never hold up the next poll."""

    def __init__(self, consumer: Callable[[], Any], group_id: str) -> None:
        self._consumer = consumer
        self._group_id = group_id
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def schedule(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            offsets, self._pending = self._pending, {}
            consumer = self._consumer()
            if consumer is None:
                return
            try:
                await consumer.commit(
                    {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
                )
            except Exception as exc:
                log.info("offsets_not_committed", group=self._group_id, error=type(exc).__name__)
                # Tried again while the partitions stay assigned here (Kafka was away): a
                # partition that went to another member is read again by it from the last
                # committed offset, and the inbox drops what was applied here.
                assigned = set(consumer.assignment())
                for partition, offset in offsets.items():
                    if partition in assigned:
                        self._pending[partition] = max(self._pending.get(partition, 0), offset)
                if self._pending:
                    await asyncio.sleep(COMMIT_RETRY_S)

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for the commits scheduled so far (before the consumer closes), at most
        `timeout`: what is not committed by then is read again after the restart."""
        task = self._task
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)


class ConsumerRuntime:
    """Subscribes one consumer group to the topics of its subscriptions' events; each handler
    call gets an `EventContext` over `service` (whose pool holds the effects' transactions)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        service: ServiceContext[Any],
        subscriptions: Subscriptions[Any],
        group_id: str,
        producer_factory: Callable[[], AIOKafkaProducer],
        retry: RetryPolicy | None = None,
        graceful_timeout: float = 15.0,
        after_effect: EffectHook | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        security: KafkaSecurity | None = None,
    ) -> None:
        self.group_id = group_id
        self._auto_offset_reset = auto_offset_reset
        self._trackers: list[_AssignmentTracker] = []
        self._committers: list[_OffsetCommitter] = []
        self._service = service
        self._pool = service.pool
        self._retry = retry or RetryPolicy()
        self._producer_factory = producer_factory
        self._dlq_producer: AIOKafkaProducer | None = None
        self._after_effect = after_effect
        self._subscriptions = subscriptions
        self._handlers = subscriptions.handlers
        self._batch_handlers = subscriptions.batch_handlers
        self._stopping = asyncio.Event()
        self._lag_reported: set[tuple[str, int]] = set()
        self.total_lag: int | None = None  # None until sampled
        self.broker = KafkaBroker(
            # FastStream takes a string for ONE host: split "a:9092,b:9092" into the list
            bootstrap_list(bootstrap_servers),
            client_id=f"{group_id}-{socket.gethostname()}",
            graceful_timeout=graceful_timeout,
            logger=None,
            security=(security or env_security()).faststream_security(),
            # the service made sure of its topics (ensure_topics) with a login that may not
            # create other topics; FastStream's own attempt would only be refused (ACLs)
            allow_auto_create_topics=False,
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

    async def partition_lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each partition this instance is assigned: end offset minus
        committed offset (before the group's first commit: minus the position). A stuck
        handler commits nothing, so its lag grows with every record published behind it."""
        lag: dict[tuple[str, int], int] = {}
        for tracker in self._trackers:
            consumer = tracker.consumer()
            assigned = list(consumer.assignment()) if consumer is not None else []
            if not assigned:
                continue
            ends = await consumer.end_offsets(assigned)
            for partition in assigned:
                done = await consumer.committed(partition)
                if done is None:
                    done = await consumer.position(partition)
                lag[(partition.topic, partition.partition)] = max(ends[partition] - done, 0)
        return lag

    async def sample_lag(self) -> int:
        """Refresh the consumer-lag gauge of this instance's partitions; returns the total."""
        lag = await self.partition_lag()
        for topic, partition in self._lag_reported - lag.keys():
            CONSUMER_LAG.remove(self.group_id, topic, str(partition))
        for (topic, partition), behind in lag.items():
            CONSUMER_LAG.labels(self.group_id, topic, str(partition)).set(behind)
        self._lag_reported = set(lag)
        self.total_lag = sum(lag.values())
        return self.total_lag

    def forget_lag(self) -> None:
        """The lag is unknown (Kafka unreachable): drop the gauge rather than show a stale 0."""
        for topic, partition in self._lag_reported:
            CONSUMER_LAG.remove(self.group_id, topic, str(partition))
        self._lag_reported = set()
        self.total_lag = None

    @property
    def topics(self) -> list[str]:
        return self._subscriptions.topics

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
        for committer in self._committers:
            await committer.flush()
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
            ack_policy=AckPolicy.MANUAL,  # the offsets are committed by `committer`
            listener=tracker,
            batch=True,
            max_records=MAX_POLL_RECORDS,
            batch_timeout_ms=IDLE_POLL_MS,
            parser=lenient_header_parser,
            decoder=undecoded,
        )
        tracker.consumer = lambda: subscriber.consumer
        committer = _OffsetCommitter(tracker.consumer, self.group_id)
        self._committers.append(committer)

        async def consume(message: KafkaMessage) -> None:
            # Each partition's records in offset order; the offsets are committed once, after
            # the last record's transaction (a failure rewinds the whole poll).
            records = message.raw_message
            batch = records if isinstance(records, tuple) else (records,)
            try:
                for start in range(0, len(batch), MAX_RECORDS_PER_TRANSACTION):
                    await self.process_batch(batch[start : start + MAX_RECORDS_PER_TRANSACTION])
            except BaseException:
                await message.nack()  # back to the poll's first records: none is skipped
                raise
            committer.schedule(batch)
            if self._stopping.is_set():
                await committer.flush()  # the consumer closes next: commit before it does

        subscriber(consume)

    async def process_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply records in order: all in one transaction when every one parses and applies
        cleanly (one commit, not one per event), otherwise one by one as `process` does, with
        its retries and dead letters. Never raises for bad data."""
        if len(records) > 1 and await self._apply_together(records):
            return
        for record in records:
            await self.process(record)

    async def _apply_together(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> bool:
        """The records' inbox claims (one statement) and effects, in one transaction; False
        (nothing applied) when a record is poison or any effect fails: the caller then goes
        one by one. Consecutive fresh events of a type with a batch handler go to it at once."""
        started = time.perf_counter()
        prepared: list[Prepared] = []
        for record in records:
            try:
                envelope, event = parse_from(record)
            except Exception:
                return False  # poison or forged: `process` dead-letters it
            prepared.append((record, envelope, event))
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                outcomes = await self._apply_prepared(conn, prepared)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("batch_applied_one_by_one", records=len(records), error=type(exc).__name__)
            return False
        await self._account(prepared, outcomes, (time.perf_counter() - started) / len(records))
        return True

    async def _apply_prepared(self, conn: Connection, prepared: Sequence[Prepared]) -> list[str]:
        """Inside the transaction: claim, then apply in offset order; each record's outcome."""
        claims = [
            inbox.Claim(envelope.event_id, record.topic, record.partition, record.offset)
            for record, envelope, _ in prepared
            if (record.topic, envelope.type) in self._handlers
        ]
        fresh = await inbox.claim_many(conn, self.group_id, claims)
        outcomes: list[str] = []
        run: list[Prepared] = []  # consecutive fresh events for one batch handler

        async def flush() -> None:
            if run:
                await self._handle_run(conn, run)
                run.clear()

        for item in prepared:
            record, envelope, event = item
            key = (record.topic, envelope.type)
            handler = self._handlers.get(key)
            if handler is None:
                outcomes.append(IGNORED)
                continue
            if envelope.event_id not in fresh:
                outcomes.append(DUPLICATE)
                continue
            fresh.discard(envelope.event_id)  # a second copy in this poll is a duplicate
            outcomes.append(APPLIED)
            if key in self._batch_handlers:
                if run and (run[0][0].topic, run[0][1].type) != key:
                    await flush()
                run.append(item)
                continue
            await flush()
            with (
                correlation_scope(envelope.correlation_id, envelope.event_id),
                tracing.span(
                    f"{record.topic} process",
                    kind=tracing.SpanKind.CONSUMER,
                    parent=tracing.extract(record.headers or ()),
                    attributes=self._span_attributes(record),
                ),
            ):
                await handler(event, self._context(conn, record, envelope))
        await flush()
        return outcomes

    def _context(
        self, conn: Connection, record: ConsumerRecord[bytes, bytes], envelope: Envelope
    ) -> EventContext[Any]:
        return EventContext(
            envelope,
            conn,
            self._service,
            record.topic,
            record.partition,
            record.offset,
            record.headers or (),
        )

    async def _handle_run(self, conn: Connection, run: Sequence[Prepared]) -> None:
        first = run[0][0]
        handler = self._batch_handlers[(first.topic, run[0][1].type)]
        with tracing.span(
            f"{first.topic} process",
            kind=tracing.SpanKind.CONSUMER,
            parent=tracing.extract(first.headers or ()),
            attributes={**self._span_attributes(first), "messaging.batch.message_count": len(run)},
        ):
            await handler([(event, self._context(conn, r, envelope)) for r, envelope, event in run])

    async def _account(
        self, prepared: Sequence[Prepared], outcomes: Sequence[str], seconds: float
    ) -> None:
        """Metrics and one log line for the batch (duplicates, rare, one line each)."""
        applied: Counter[str] = Counter()
        consumed: Counter[tuple[str, str]] = Counter()
        for (record, envelope, _), outcome in zip(prepared, outcomes, strict=True):
            consumed[(record.topic, outcome)] += 1
            if outcome == APPLIED:
                applied[envelope.type] += 1
            elif outcome == DUPLICATE:
                log.info("event_duplicate", type=envelope.type, event_id=str(envelope.event_id))
            if outcome != IGNORED and self._after_effect is not None:
                await self._after_effect(envelope)
        for event_type, count in applied.items():
            EVENTS_APPLIED.labels(self.group_id, event_type).inc(count)
        duplicates = sum(n for (_, outcome), n in consumed.items() if outcome == DUPLICATE)
        if duplicates:
            EVENTS_DUPLICATE.labels(self.group_id).inc(duplicates)
        for (topic, outcome), count in consumed.items():
            MESSAGES_CONSUMED.labels(self.group_id, topic, outcome).inc(count)
            histogram = HANDLER_DURATION.labels(self.group_id, topic, outcome)
            for _ in range(count):
                histogram.observe(seconds)
        if applied:
            log.info("events_applied", count=sum(applied.values()), types=dict(applied))

    async def _claim_and_handle(
        self,
        conn: Connection,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        event: BaseEvent,
        handler: Handler,
    ) -> bool:
        """Inside the caller's transaction: claim the event in the inbox and, when it is new,
        run its handler. False for a redelivery (nothing done)."""
        fresh = await inbox.claim(
            conn,
            self.group_id,
            envelope.event_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        if fresh:
            await handler(event, self._context(conn, record, envelope))
        return fresh

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Apply one record at least once and its effect exactly once; never raise for bad data.

        The record's span continues the trace in its `traceparent` header, so whatever the
        handler writes to the outbox carries the same trace on.
        """
        started = time.perf_counter()
        with tracing.span(
            f"{record.topic} process",
            kind=tracing.SpanKind.CONSUMER,
            parent=tracing.extract(record.headers or ()),
            attributes=self._span_attributes(record),
        ) as span:
            outcome = await self._process(record)
            span.set_attribute("carebridge.outcome", outcome)
            if outcome == DEAD_LETTERED:
                tracing.mark_failed(span, "dead-lettered")
        MESSAGES_CONSUMED.labels(self.group_id, record.topic, outcome).inc()
        HANDLER_DURATION.labels(self.group_id, record.topic, outcome).observe(
            time.perf_counter() - started
        )

    def _span_attributes(self, record: ConsumerRecord[bytes, bytes]) -> dict[str, str | int]:
        routed = type_from_headers(record.headers or ())
        return {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": self.group_id,
            "carebridge.event_type": routed[0] if routed else "unknown",
        }

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> str:
        try:
            envelope, event = parse_from(record)
        except ProducerNotTopicOwner as exc:
            EVENTS_PRODUCER_REFUSED.labels(self.group_id, record.topic).inc()
            log.warning(
                "event_producer_refused",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                producer=exc.producer,
                owner=exc.owner,
            )
            await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts=1)
            return DEAD_LETTERED
        except ContractError as exc:
            await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts=1)
            return DEAD_LETTERED
        except Exception as exc:  # a parser bug: parsing again cannot help, and the message
            # of a non-contract error may quote the input (PHI), so only its class is kept
            await self._dead_letter(record, f"{type(exc).__name__}: unparseable", attempts=1)
            return DEAD_LETTERED
        handler = self._handlers.get((record.topic, envelope.type))
        if handler is None:
            return IGNORED  # a known event this group does not care about
        with correlation_scope(envelope.correlation_id, envelope.event_id):
            return await self._apply(record, envelope, event, handler)

    async def _apply(
        self,
        record: ConsumerRecord[bytes, bytes],
        envelope: Envelope,
        event: BaseEvent,
        handler: Handler,
    ) -> str:
        attempts = 0
        transient_attempts = 0
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    fresh = await self._claim_and_handle(conn, record, envelope, event, handler)
                if fresh:
                    EVENTS_APPLIED.labels(self.group_id, envelope.type).inc()
                    log.info("event_applied", type=envelope.type, event_id=str(envelope.event_id))
                else:
                    EVENTS_DUPLICATE.labels(self.group_id).inc()
                    log.info("event_duplicate", type=envelope.type, event_id=str(envelope.event_id))
                if self._after_effect is not None:
                    await self._after_effect(envelope)
                return APPLIED if fresh else DUPLICATE
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                transient_attempts += 1
                HANDLER_FAILURES.labels(self.group_id, "true").inc()
                note_error("consumer", type(exc).__name__)
                if self._stopping.is_set():
                    raise  # not committed: redelivered after restart
                HANDLER_RETRIES.labels(self.group_id, record.topic, "true").inc()
                delay = self._retry.delay(transient_attempts)
                log.warning("event_transient_failure", error=type(exc).__name__, delay_s=delay)
                await asyncio.sleep(delay)
            except Exception as exc:
                attempts += 1
                HANDLER_FAILURES.labels(self.group_id, "false").inc()
                note_error("consumer", type(exc).__name__)
                if attempts >= self._retry.max_attempts:
                    await self._dead_letter(record, f"{type(exc).__name__}: {exc}", attempts)
                    return DEAD_LETTERED
                HANDLER_RETRIES.labels(self.group_id, record.topic, "false").inc()
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
        # A record with neither key nor value (some clients send one) is parked with an
        # empty value: the producer refuses to send nothing at all.
        value = b"" if record.value is None and record.key is None else record.value
        await self._dlq_producer.send_and_wait(target, value=value, key=record.key, headers=headers)
        EVENTS_DEAD_LETTERED.labels(self.group_id).inc()
        MESSAGES_PUBLISHED.labels(self.group_id, target).inc()
        note_error("dead_letter", error.split(":", 1)[0])
        log.error(
            "event_dead_lettered",
            dlq_topic=target,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
            error=error.split(":", 1)[0],
        )


def parse_from(record: ConsumerRecord[bytes, bytes]) -> tuple[Envelope, BaseEvent]:
    """The record's envelope and event, believed only when the envelope's producer owns the
    topic it was read from: any client able to write to a topic cannot also claim to be its
    owner. Raises a `ContractError` (`ProducerNotTopicOwner` for that case)."""
    envelope, event = parse(record.value or b"")
    check_producer(envelope, record.topic)
    return envelope, event


async def lenient_header_parser(
    records: ConsumerRecord[bytes, bytes] | tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[Any], Awaitable[Any]],
) -> Any:
    """FastStream's parser decodes every header value as UTF-8 and fails on a null or binary
    one, before any handler runs: the record would be retried forever and block its partition.
    It gets copies with such values replaced; the handler still sees the records as received."""
    batch = records if isinstance(records, tuple) else (records,)
    readable = tuple(
        record
        if all(_is_text(v) for _, v in record.headers or ())
        else dataclasses.replace(
            record, headers=[(k, _readable(v)) for k, v in record.headers or ()]
        )
        for record in batch
    )  # a copy only of a record that needs one (issue 16: not of every record)
    message = await original(readable if isinstance(records, tuple) else readable[0])
    message.raw_message = records
    return message


async def undecoded(message: Any) -> Any:
    """The handler reads the records themselves: FastStream's own decoding of the batch would
    parse every record's headers again, as strictly as its parser does."""
    return message.body


def _is_text(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _readable(value: bytes | None) -> bytes:
    if value is None:
        return b""
    try:
        value.decode()
    except UnicodeDecodeError:
        return value.decode(errors="replace").encode()
    return value


def dlq_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """The dead-letter headers of a record read from a `.dlq` topic."""
    return {k: v.decode() for k, v in (record.headers or ()) if k in DLQ_HEADERS}
