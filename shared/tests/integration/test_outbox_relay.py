"""Outbox + relay against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.testing import (
    eventually,
    migrated_pool,
    produce,
    read_topic,
    sample_assessment,
    spawn_until,
    wrap,
)
from carebridge_shared.kafka import make_producer
from carebridge_shared.outbox import Outbox, OutboxUsageError
from carebridge_shared.relay import OutboxRelay

pytestmark = pytest.mark.integration

PROCS = Path(__file__).parent.parent / "procs"
SCHEMA = "outbox_test"


@pytest.fixture
async def pool(fresh_database_url: str, stack_endpoints):  # type: ignore[no-untyped-def]
    async with migrated_pool(
        fresh_database_url,
        SCHEMA,
        PROCS / "migrations",
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        topics=[str(Topic.ASSESSMENTS)],
    ) as pool:
        yield pool


def _relay(pool, bootstrap: str) -> OutboxRelay:  # type: ignore[no-untyped-def]
    return OutboxRelay(pool, SCHEMA, lambda: make_producer(bootstrap, "test-relay"))


async def test_rolled_back_row_is_never_published_and_committed_one_is_published_once(
    pool, stack_endpoints
) -> None:
    patient = f"p-{uuid.uuid4()}"
    outbox = Outbox("intake", SCHEMA)  # the owner of the topic: consumers believe no other
    with pytest.raises(RuntimeError, match="rollback"):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, sample_assessment(patient), subject=patient)
            raise RuntimeError("rollback")
    async with pool.acquire() as conn, conn.transaction():
        committed = await outbox.add(conn, sample_assessment(patient), subject=patient)

    relay = _relay(pool, stack_endpoints.kafka_bootstrap)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0
    await relay.close()

    records = await read_topic(
        stack_endpoints.kafka_bootstrap,
        str(Topic.ASSESSMENTS),
        where=lambda r: r.key == patient.encode(),
        expect=1,
        settle=2.0,
    )
    assert [Envelope.from_bytes(r.value).event_id for r in records] == [committed.event_id]
    assert committed.sequence == 1, "the rolled-back row must not consume a sequence number"
    assert records[0].headers["ce-type"] == b"AssessmentCompleted"


async def test_outbox_refuses_writes_outside_a_transaction(pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(OutboxUsageError):
            await Outbox("intake", SCHEMA).add(conn, sample_assessment("p"), subject="p")


async def test_relay_killed_after_publish_republishes_and_consumer_applies_once(
    pool, stack_endpoints, fresh_database_url: str
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    async with pool.acquire() as conn, conn.transaction():
        envelope = await Outbox("intake", SCHEMA).add(
            conn, sample_assessment(patient), subject=patient
        )

    base = [
        sys.executable,
        str(PROCS / "relay_once.py"),
        "--bootstrap",
        bootstrap,
        "--database-url",
        fresh_database_url,
        "--schema",
        SCHEMA,
    ]
    group = f"dedup-{uuid.uuid4().hex[:8]}"
    consumer = spawn_until(
        [sys.executable, str(PROCS / "counter_consumer.py"), "--bootstrap", bootstrap,
         "--database-url", fresh_database_url, "--schema", SCHEMA, "--group", group,
         "--subject", patient],
        b"consumer-ready",
    )  # fmt: skip
    killed = subprocess.run([*base, "--kill-after-publish"], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1

    drained = subprocess.run(base, capture_output=True, timeout=120)
    assert drained.returncode == 0, drained.stderr.decode()[-2000:]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0

    copies = await read_topic(
        bootstrap,
        str(Topic.ASSESSMENTS),
        where=lambda r: r.key == patient.encode(),
        expect=2,
        settle=1.0,
    )
    assert [Envelope.from_bytes(r.value).event_id for r in copies] == [envelope.event_id] * 2

    try:
        # A later event on the same partition: once it is applied, both copies were seen.
        marker = wrap(sample_assessment(patient), patient, sequence=2)
        await produce(bootstrap, marker)
        await eventually(
            lambda: pool.fetchval(
                "SELECT count(*) FROM effects WHERE event_id = $1", marker.event_id
            ),
            what="the marker event behind both copies",
        )
    finally:
        consumer.terminate()
        output, _ = consumer.communicate(timeout=30)
    assert (
        await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", envelope.event_id)
        == 1
    )
    assert b'"event_duplicate"' in output, "the second copy must reach the consumer and be dropped"


@contextlib.asynccontextmanager
async def _running(relay: OutboxRelay) -> AsyncIterator[None]:
    """The relay's own loop (as a service runs it), leading, until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: relay.is_leader and relay.healthy, what="the relay leading")
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_committed_rows_are_handed_over_in_memory_not_read_back(
    pool, stack_endpoints
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    outbox = Outbox("intake", SCHEMA)
    relay = OutboxRelay(
        pool, SCHEMA, lambda: make_producer(bootstrap, "test-relay"), poll_interval=60.0
    )
    async with _running(relay):  # woken only by hand-overs: its poll is a minute away
        async with pool.acquire() as conn:
            async with conn.transaction():
                first = await outbox.add(conn, sample_assessment(patient), subject=patient)
            # Committed, not yet released (so not yet handed over): a relay that read the row
            # back would publish this instead of what the transaction wrote.
            await pool.execute("UPDATE outbox SET payload = 'read back' WHERE published_at IS NULL")
        with pytest.raises(RuntimeError, match="rollback"):
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, sample_assessment(patient), subject=patient)
                raise RuntimeError("rollback")  # handed over as well, and never published
        async with pool.acquire() as conn, conn.transaction():
            second = await outbox.add(conn, sample_assessment(patient), subject=patient)
        records = await read_topic(
            bootstrap,
            str(Topic.ASSESSMENTS),
            where=lambda r: r.key == patient.encode(),
            expect=2,
            settle=2.0,
            timeout=20.0,  # well before the relay's poll
        )
    await relay.close()
    published = [Envelope.from_bytes(r.value) for r in records]
    assert [e.event_id for e in published] == [first.event_id, second.event_id]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_a_handed_over_row_waits_for_an_older_row_of_its_subject_from_another_replica(
    pool, stack_endpoints, fresh_database_url: str
) -> None:
    """Another replica's row (which only the table shows) goes out before this process's
    later row of the same subject, though only the later one woke the relay."""
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    outbox = Outbox("intake", SCHEMA)
    relay = OutboxRelay(
        pool, SCHEMA, lambda: make_producer(bootstrap, "test-relay"), poll_interval=60.0
    )
    # a pool without the release hook: its transactions hand nothing over, as in a replica
    replica = await asyncpg.create_pool(
        fresh_database_url, min_size=1, max_size=1,
        server_settings={"search_path": f"{SCHEMA},public"},
    )  # fmt: skip
    try:
        async with _running(relay):
            async with replica.acquire() as conn, conn.transaction():
                older = await outbox.add(conn, sample_assessment(patient), subject=patient)
            async with pool.acquire() as conn, conn.transaction():
                newer = await outbox.add(conn, sample_assessment(patient), subject=patient)
            records = await read_topic(
                bootstrap,
                str(Topic.ASSESSMENTS),
                where=lambda r: r.key == patient.encode(),
                expect=2,
                settle=1.0,
                timeout=20.0,  # well before the relay's 60 s poll
            )
    finally:
        await replica.close()
        await relay.close()
    published = [Envelope.from_bytes(r.value) for r in records]
    assert [e.event_id for e in published] == [older.event_id, newer.event_id]
    assert [e.sequence for e in published] == [1, 2]
