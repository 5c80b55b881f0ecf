"""The consumer runtime: one consumer group on FastStream, its subscriptions' handlers applied
through one path (`apply`), inside the wrappers of `middleware`, with the retry policy of
`retries` around a record applied on its own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from carebridge_shared.consumer import middleware
from carebridge_shared.consumer.apply import Applier
from carebridge_shared.consumer.dead_letters import DeadLetterPublisher, DeadLetters
from carebridge_shared.consumer.delivery import Delivery, Middleware, compose
from carebridge_shared.consumer.offsets import AssignmentTracker, OffsetCommitter
from carebridge_shared.consumer.records import Record, lenient_header_parser, undecoded
from carebridge_shared.consumer.retries import RetryPolicy, RetryThenDeadLetter
from carebridge_shared.consumer.subscriptions import Subscriptions
from carebridge_shared.context import ServiceContext
from carebridge_shared.kafka import KafkaSecurity, bootstrap_list, env_security, wait_for_records
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import CONSUMER_LAG

log = get_logger(__name__)

# Records taken per poll. Their offsets are committed once per poll, after their effects: a
# commit is a broker round trip (~7 ms on the dev broker), which, paid per record, held a
# consumer to ~70 events/s (docs/performance.md).
MAX_POLL_RECORDS = 100
# Records applied in one transaction (inbox claims and effects): one commit, so one WAL flush,
# for up to this many events. Bounded, because the first event of a transaction becomes
# visible only when the last is done, and handler locks are held as long.
MAX_RECORDS_PER_TRANSACTION = 25
# An idle poll waits up to this long for records; one that arrives ends the wait at once
# (`kafka.wait_for_records`), so this bounds only how often an idle consumer wakes up.
IDLE_POLL_MS = 1000


def observers(group_id: str, after_effect: middleware.EffectHook | None) -> list[Middleware]:
    """The wrappers around every handling, outermost first."""
    wrappers = [
        middleware.tracing_spans(group_id),
        middleware.correlation_ids(),
        middleware.metrics(group_id),
        middleware.logging(),
    ]
    if after_effect is not None:
        wrappers.append(middleware.after_effect(after_effect))
    return wrappers


def kafka_broker(
    bootstrap_servers: str, group_id: str, graceful_timeout: float, security: KafkaSecurity | None
) -> KafkaBroker:
    return KafkaBroker(
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


class ConsumerRuntime:
    """Subscribes one consumer group to the topics of its subscriptions' events; each handler
    call gets an `EventContext` over `service` (whose pool holds the effects' transactions).

    FastStream's Kafka default (ack first, auto commit) is at-most-once; here offsets are
    committed (AckPolicy.MANUAL) only of records whose effects' transaction committed, in the
    background while the next poll is applied. A lost commit only means the records come
    again, and the inbox drops them. A failure rewinds the partitions to the poll's first
    records."""

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
        after_effect: middleware.EffectHook | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        security: KafkaSecurity | None = None,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.group_id = group_id
        self._auto_offset_reset = auto_offset_reset
        self._subscriptions = subscriptions
        self._trackers: list[AssignmentTracker] = []
        self._committers: list[OffsetCommitter] = []
        self._stopping = asyncio.Event()
        self._dead_letters = dead_letters or DeadLetterPublisher(group_id, producer_factory)
        apply = Applier(group_id, service, subscriptions).apply
        wrappers = observers(group_id, after_effect)
        self._together = compose(wrappers, apply)
        policy = RetryThenDeadLetter(
            group_id, retry or RetryPolicy(), self._dead_letters, self._stopping
        )
        self._alone = compose([*wrappers, policy], apply)
        self._lag_reported: set[tuple[str, int]] = set()
        self.total_lag: int | None = None  # None until sampled
        self.broker = kafka_broker(bootstrap_servers, group_id, graceful_timeout, security)
        self.started = False

    @property
    def topics(self) -> list[str]:
        return self._subscriptions.topics

    @property
    def joined(self) -> bool:
        """Every subscription has joined its consumer group (ready to receive)."""
        return self.started and all(t.joined.is_set() for t in self._trackers)

    async def until_joined(self) -> None:
        """Wait until every subscription can receive (see `joined`)."""
        for tracker in self._trackers:
            await tracker.joined.wait()

    async def start(self) -> None:
        await self._dead_letters.start()
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
        await self._dead_letters.stop()
        log.info("consumer_stopped", group=self.group_id)

    def _subscribe(self, topics: list[str]) -> None:
        # One consumer for all of the group's topics: one join per start, one rebalance per
        # membership change (a consumer per topic would rebalance the group once per topic).
        tracker = AssignmentTracker(self.group_id, ",".join(topics))
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
        wait_for_records(subscriber, max_records=MAX_POLL_RECORDS, wait_ms=IDLE_POLL_MS)
        tracker.consumer = lambda: subscriber.consumer
        committer = OffsetCommitter(tracker.consumer, self.group_id)
        self._committers.append(committer)

        async def consume(message: KafkaMessage) -> None:
            await self._consume(message, committer)

        subscriber(consume)

    async def _consume(self, message: KafkaMessage, committer: OffsetCommitter) -> None:
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

    async def process_batch(self, records: Sequence[Record]) -> None:
        """Apply records in order: all in one transaction when every one parses and applies
        cleanly (one commit, not one per event), otherwise one by one as `process` does, with
        its retries and dead letters. Never raises for bad data."""
        delivery = Delivery.of(records)
        if len(records) > 1 and delivery.readable:
            try:
                await self._together(delivery)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("batch_applied_one_by_one", records=len(records), error=type(exc).__name__)
        for record in records:
            await self.process(record)

    async def process(self, record: Record) -> None:
        """Apply one record at least once and its effect exactly once (a batch of one, retried,
        then dead-lettered); never raise for bad data."""
        await self._alone(Delivery.of([record]))

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
