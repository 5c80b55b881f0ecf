"""Outbox relay: publishes committed outbox rows to Kafka until Kafka has them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Span

from carebridge_shared import tracing, wakeup
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    MESSAGES_PUBLISHED,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_PUBLISHED,
    note_error,
)
from carebridge_shared.outbox import OutboxRow, notify_channel

__all__ = ["OutboxRelay", "OutboxRow", "ProducerFactory", "PublishedHook"]

log = get_logger(__name__)

# Rows are marked published in a transaction that commits only after Kafka acknowledged them:
# a crash or a failed send rolls the mark back, and the row is published again (at least once).
# The claim takes the oldest unpublished committed rows, so a row handed over in memory is
# published only once its transaction committed (a rolled-back one is not in the table) and
# never before an older row of its subject (one sequence lock per subject makes id order the
# commit order); the payloads of the rows held in memory ($1) are not read back.
CLAIM = (
    "UPDATE outbox SET published_at = now() WHERE id IN ("
    " SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $2 FOR UPDATE)"
    " RETURNING id, topic, message_key,"
    " CASE WHEN id = ANY($1::bigint[]) THEN NULL ELSE payload END,"
    " CASE WHEN id = ANY($1::bigint[]) THEN NULL ELSE headers END"
)
ANY_UNPUBLISHED = "SELECT EXISTS (SELECT FROM outbox WHERE published_at IS NULL)"
# Rows held in memory at most, in batches (beyond it they are read from the table).
HELD_BATCHES = 10


ProducerFactory = Callable[[], AIOKafkaProducer]
PublishedHook = Callable[[Sequence[OutboxRow]], Awaitable[None]]


class OutboxRelay:
    """One leader per schema (advisory lock) publishes rows in id order, so per-key order holds.

    A row's mark (`published_at`) commits only after Kafka acknowledged it (acks=all). A crash
    between the two republishes the row; subscribers drop the duplicate by event_id. The rows
    this process's transactions write are handed over in memory once they are released (not
    read back, published in batches); the table is polled for the rest (other replicas, rows
    left by a crash).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        producer_factory: ProducerFactory,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.5,
        after_publish: PublishedHook | None = None,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._after_publish = after_publish
        self._wake = asyncio.Event()
        # rows handed over by this process's committed (or rolled back) transactions, by id
        self._held: dict[int, OutboxRow] = {}
        self._lock_key = zlib.crc32(f"outbox-relay:{schema}".encode())
        self.published_total = 0
        self.is_leader = False
        self.healthy = False

    async def _get_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._producer_factory()
            await producer.start()
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def close(self) -> None:
        await self._drop_producer()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self._pool.acquire() as conn:
            return await self._publish_batch(conn)

    async def _publish_batch(self, conn: Connection) -> int:
        held = dict(self._held)  # what was handed over before the claim's snapshot
        if not held and not await conn.fetchval(ANY_UNPUBLISHED):
            return 0  # an idle poll: one cheap read, no transaction
        async with conn.transaction():
            records = await conn.fetch(CLAIM, list(held), self._batch_size)
            rows = sorted(
                (held[r[0]] if r[3] is None else _row_from(r) for r in records),
                key=lambda row: row.id,
            )
            if rows:
                await self._send(rows)
                if self._after_publish is not None:
                    await self._after_publish(rows)
        for row in rows:
            self._held.pop(row.id, None)
        if len(rows) < self._batch_size:
            # every committed row was claimed: the held ones left were rolled back
            for row_id in held:
                self._held.pop(row_id, None)
        self.published_total += len(rows)
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        for topic, count in Counter(row.topic for row in rows).items():
            MESSAGES_PUBLISHED.labels(self._schema, topic).inc(count)
        return len(rows)

    async def _send(self, rows: Sequence[OutboxRow]) -> None:
        """Send `rows` in order and wait until Kafka acknowledged every one (acks=all)."""
        producer = await self._get_producer()
        spans = [self._publish_span(row) for row in rows]
        try:
            pending = [
                await producer.send(
                    row.topic,
                    value=row.payload,
                    key=row.key.encode(),
                    headers=[
                        (k, v.encode())
                        for k, v in tracing.inject_span(dict(row.headers), span).items()
                    ],
                )
                for row, span in zip(rows, spans, strict=True)
            ]
            await asyncio.gather(*pending)
        except Exception as exc:
            for span in spans:
                tracing.mark_failed(span, type(exc).__name__)
            raise
        finally:
            for span in spans:
                span.end()

    def _publish_span(self, row: OutboxRow) -> Span:
        """A producer span in the trace of the transaction that wrote the row (its headers
        carry that trace's traceparent); the record is sent with this span's traceparent."""
        return tracing.tracer().start_span(
            f"{row.topic} publish",
            context=tracing.extract(row.headers),
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": row.topic,
                "carebridge.outbox_id": row.id,
            },
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; survives Kafka and PostgreSQL outages by retrying."""
        backoff = self._poll_interval
        while not stop.is_set():
            try:
                await self._lead(stop)
                backoff = self._poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.healthy = False
                self.is_leader = False
                OUTBOX_PUBLISH_FAILURES.labels(self._schema).inc()
                note_error("outbox_relay", type(exc).__name__)
                log.warning("outbox_relay_retrying", error=type(exc).__name__, delay_s=backoff)
                await self._drop_producer()
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
        await self._drop_producer()

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await self._pool.acquire()
        try:
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    break
                self.is_leader = False
                self.healthy = True  # a follower is healthy: the leader publishes
                await _sleep_or_stop(stop, self._poll_interval * 4)
            else:
                return
            self.is_leader = True
            # This process's transactions hand their rows over once released; other replicas'
            # rows (and rows left by a crash) are polled for.
            wakeup.receive(notify_channel(self._schema), self._on_handed)
            try:
                while not stop.is_set():
                    self._wake.clear()
                    published = await self._publish_batch(conn)
                    self.healthy = True
                    if published < self._batch_size:
                        await self._wait_for_work(stop)
            finally:
                wakeup.stop_receiving(notify_channel(self._schema), self._on_handed)
                self._held.clear()
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", self._lock_key)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    def _on_handed(self, rows: list[OutboxRow]) -> None:
        room = self._batch_size * HELD_BATCHES - len(self._held)
        for row in rows[: max(room, 0)]:
            self._held[row.id] = row
        self._wake.set()

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=self._poll_interval, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()


def _row_from(record: asyncpg.Record) -> OutboxRow:
    return OutboxRow(
        id=record[0],
        topic=record[1],
        key=record[2],
        payload=bytes(record[3]),
        headers=json.loads(record[4]),
    )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
