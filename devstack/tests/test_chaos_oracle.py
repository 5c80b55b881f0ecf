"""What the chaos run measures, against real Kafka, PostgreSQL and the outbox relay: the
oracle's P1 check, its topic reader, and the backlog the run drains before the oracle.

Issue 16: a short chaos run under load reported 8 lost notification outbox events. The run's
drain counted no consumer lag at all, so the oracle could start while notification was still
consuming; and the oracle read the topics first and the outbox afterwards, so a row the relay
published in between (acknowledged by Kafka, marked published) was counted lost although it
was on its topic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import KafkaError

from carebridge_contracts import Envelope
from carebridge_devstack.chaos_backlog import SCHEMAS, Backlog
from carebridge_devstack.chaos_oracle import Verdict, check_acknowledged
from carebridge_devstack.testing import (
    Record,
    eventually,
    migrated_pool,
    read_topic,
    sample_assessment,
)
from carebridge_shared.kafka import ensure_topics, make_producer
from carebridge_shared.outbox import Outbox
from carebridge_shared.relay import OutboxRelay

pytestmark = pytest.mark.integration

SCHEMA = "oracle_p1"


@pytest.fixture
def topic(unique_topic_prefix: str) -> str:
    return f"{unique_topic_prefix}events"  # test sessions may share the broker


@pytest.fixture
async def pool(
    fresh_database_url: str, stack_endpoints, topic: str, tmp_path: Path
) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    async with migrated_pool(
        fresh_database_url,
        SCHEMA,
        tmp_path,  # the shared migrations (outbox) only
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        topics=[topic],
    ) as pool:
        yield pool


async def _stage(pool: asyncpg.Pool, topic: str, n: int) -> list[str]:
    """Commit `n` outbox rows bound for `topic`; returns their event ids."""
    outbox = Outbox("test", SCHEMA)
    event_ids = []
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(n):
            patient = f"p-{uuid.uuid4()}"
            envelope = await outbox.add(conn, sample_assessment(patient), subject=patient)
            event_ids.append(str(envelope.event_id))
        # Outbox.add routes by event type; these rows go to the test's own topic instead.
        await conn.execute("UPDATE outbox SET topic = $1 WHERE published_at IS NULL", topic)
    return event_ids


def _event_ids(records: list[Record]) -> set[str]:
    return {str(Envelope.from_bytes(r.value).event_id) for r in records}


async def test_a_row_the_relay_publishes_while_the_oracle_reads_is_not_counted_lost(
    pool: asyncpg.Pool, fresh_database_url: str, stack_endpoints, topic: str
) -> None:  # type: ignore[no-untyped-def]
    bootstrap = stack_endpoints.kafka_bootstrap
    relay = OutboxRelay(pool, SCHEMA, lambda: make_producer(bootstrap, "test-oracle-relay"))
    try:
        early = await _stage(pool, topic, 3)
        assert await relay.publish_pending() == 3
        late = await _stage(pool, topic, 4)  # committed; the relay has not caught up yet

        async def read_then_relay_catches_up() -> dict[str, list[Record]]:
            """The interleaving seen under load: the relay publishes the late rows (Kafka
            acknowledges them, the relay marks them) after the oracle read the topic."""
            records = await read_topic(bootstrap, topic)
            assert await relay.publish_pending() == len(late)
            return {topic: records}

        verdict = Verdict()
        await check_acknowledged(fresh_database_url, [SCHEMA], read_then_relay_catches_up, verdict)
    finally:
        await relay.close()

    figures = verdict.figures
    assert figures["lost"] == 0, verdict.violations
    assert not [v for v in verdict.violations if v.startswith("lost:")]
    assert figures["events_produced"] == len(early)
    # what it saw instead, and says: rows not yet published, published while it read
    assert figures["events_unpublished_at_end"] == len(late)
    assert figures["outbox_rows_published_while_reading"] == len(late)
    assert any("not quiet while the oracle read" in v for v in verdict.violations)
    # and they were never lost: every row is on the topic
    assert _event_ids(await read_topic(bootstrap, topic)) == set(early + late)


async def test_a_row_marked_published_that_kafka_never_had_is_counted_lost(
    pool: asyncpg.Pool, fresh_database_url: str, stack_endpoints, topic: str
) -> None:  # type: ignore[no-untyped-def]
    """The oracle still finds a real loss: a row marked published that is not on its topic
    (what a relay marking rows before Kafka's acknowledgement would leave)."""
    bootstrap = stack_endpoints.kafka_bootstrap
    relay = OutboxRelay(pool, SCHEMA, lambda: make_producer(bootstrap, "test-oracle-relay"))
    try:
        published = await _stage(pool, topic, 2)
        assert await relay.publish_pending() == 2
    finally:
        await relay.close()
    [never_sent] = await _stage(pool, topic, 1)
    await pool.execute(
        "UPDATE outbox SET published_at = now() WHERE event_id = $1", uuid.UUID(never_sent)
    )

    async def read() -> dict[str, list[Record]]:
        return {topic: await read_topic(bootstrap, topic)}

    verdict = Verdict()
    await check_acknowledged(fresh_database_url, [SCHEMA], read, verdict)
    assert verdict.figures["lost"] == 1
    assert verdict.figures["events_produced"] == len(published) + 1
    assert verdict.violations == [f"lost: {SCHEMA} outbox event {never_sent} not on {topic}"]


async def test_reading_a_topic_to_its_end_raises_rather_than_return_part_of_it(
    stack_endpoints, topic: str
) -> None:  # type: ignore[no-untyped-def]
    """A read that could not reach the end offsets in time returned what it had, and the
    oracle took the records it had not got to for lost ones."""
    bootstrap = stack_endpoints.kafka_bootstrap
    await ensure_topics(bootstrap, [topic], partitions=1, replication_factor=1)
    producer = make_producer(bootstrap, "test-oracle-reader")
    await producer.start()
    try:
        sent = [await producer.send(topic, value=b"{}", key=b"k") for _ in range(1500)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    def stalled_reader(record: Record) -> bool:
        """The reader falls behind (as under CPU contention) on its first batch, which holds
        at most 1000 of the 1500 records: past the deadline before the end."""
        nonlocal stalled
        if not stalled:
            stalled = True
            time.sleep(5.0)
        return True

    stalled = False
    with pytest.raises(TimeoutError, match="not to the end"):
        await read_topic(bootstrap, topic, where=stalled_reader, timeout=5.0)
    assert stalled, "the read never got to a record"
    assert len(await read_topic(bootstrap, topic, timeout=60.0)) == 1500


async def test_the_backlog_counts_a_groups_lag_from_its_first_reading(
    fresh_database_url: str, stack_endpoints, topic: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The drain before the oracle and every recovery time wait for lag 0. The backlog's
    consumer knew no topic's partitions for its first 5 minutes (aiokafka fetches no topic
    metadata at bootstrap), so it read every lag as 0: a short run 'drained' while the
    services were still consuming."""
    bootstrap = stack_endpoints.kafka_bootstrap
    for schema in SCHEMAS:  # the outboxes the backlog also reads
        async with migrated_pool(
            fresh_database_url, schema, tmp_path, bootstrap_servers=bootstrap, topics=[topic]
        ):
            pass
    producer = make_producer(bootstrap, "test-backlog")
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, value=b"{}", key=f"k{n}".encode())
    finally:
        await producer.stop()

    # a group that has consumed nothing of `topic` (the group is named as the service)
    backlog = Backlog(bootstrap, fresh_database_url, {"booking": [topic]})

    async def first_reading() -> dict[str, int] | None:
        try:
            return await backlog.totals()
        except KafkaError:  # e.g. the group's coordinator still loading on a fresh broker
            await backlog.close()
            return None

    try:
        totals = await eventually(first_reading, timeout=60.0, what="a backlog reading")
        mark = await backlog.mark("booking")
        reached = await backlog.reached("booking", mark)
    finally:
        await backlog.close()
    assert totals["booking.lag"] == 5, totals
    assert sum(mark.ends.values()) == 5 and len(mark.ends) == 3
    assert not reached
