"""Consumer runtime against real Kafka and PostgreSQL: dedup, dead letters, crash safety."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from carebridge_contracts import AssessmentCompleted, Envelope, Topic, dlq_topic
from carebridge_devstack.testing import (
    eventually,
    migrated_pool,
    produce,
    produce_raw,
    read_topic,
    sample_assessment,
    service_context,
    spawn_until,
    wrap,
)
from carebridge_shared.consumer import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    ConsumerRuntime,
    EventContext,
    RetryPolicy,
    Subscriptions,
)
from carebridge_shared.kafka import make_producer
from carebridge_shared.outbox import Outbox

pytestmark = pytest.mark.integration

PROCS = Path(__file__).parent.parent / "procs"
SCHEMA = "consumer_test"
TOPIC = str(Topic.ASSESSMENTS)


@pytest.fixture
async def pool(fresh_database_url: str, stack_endpoints):  # type: ignore[no-untyped-def]
    async with migrated_pool(
        fresh_database_url,
        SCHEMA,
        PROCS / "migrations",
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        topics=[TOPIC, dlq_topic(TOPIC)],
    ) as pool:
        yield pool


def _runtime(pool, subscriptions, bootstrap: str, group: str, attempts: int = 3) -> ConsumerRuntime:  # type: ignore[no-untyped-def]
    return ConsumerRuntime(
        bootstrap_servers=bootstrap,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=group,
        producer_factory=lambda: make_producer(bootstrap, "test-dlq"),
        retry=RetryPolicy(max_attempts=attempts, initial_backoff=0.05, max_backoff=0.2),
        auto_offset_reset="latest",  # new group: see only what this test publishes
    )


async def _start(runtime: ConsumerRuntime) -> None:
    await runtime.start()
    await asyncio.wait_for(runtime.until_joined(), timeout=60)


async def test_event_delivered_twice_changes_state_once(pool, stack_endpoints) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"dup-{uuid.uuid4().hex[:8]}"
    envelope = wrap(sample_assessment(patient), patient)
    marker = wrap(sample_assessment(patient), patient, sequence=2)
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            await ctx.conn.execute(
                "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
                ctx.envelope.event_id,
                patient,
                ctx.envelope.sequence,
            )

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    await _start(runtime)
    try:
        await produce(bootstrap, envelope)
        await produce(bootstrap, envelope)  # same event_id, a second delivery
        await produce(bootstrap, marker)
        await eventually(lambda: _has_effect(pool, marker.event_id))
    finally:
        await runtime.stop()
    rows = await pool.fetch(
        "SELECT event_id FROM effects WHERE subject = $1 ORDER BY sequence", patient
    )
    assert [r["event_id"] for r in rows] == [envelope.event_id, marker.event_id]


async def _has_effect(pool, event_id: uuid.UUID) -> bool:  # type: ignore[no-untyped-def]
    return bool(await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", event_id))


async def test_failing_handler_dead_letters_after_n_attempts_and_partition_moves_on(
    pool, stack_endpoints
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    poison = wrap(sample_assessment(patient), patient, sequence=1)
    healthy = wrap(sample_assessment(patient), patient, sequence=2)
    attempts: list[uuid.UUID] = []

    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject != patient:
            return
        if ctx.envelope.event_id == poison.event_id:
            attempts.append(ctx.envelope.event_id)
            raise ValueError("handler always fails for this event")
        await ctx.conn.execute(
            "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
            ctx.envelope.event_id,
            patient,
            ctx.envelope.sequence,
        )

    runtime = _runtime(pool, subscriptions, bootstrap, group, attempts=4)

    await _start(runtime)
    try:
        await produce(bootstrap, poison)
        await produce(bootstrap, healthy)  # same key: same partition, after the poison one
        await eventually(lambda: _has_effect(pool, healthy.event_id))
    finally:
        await runtime.stop()

    assert len(attempts) == 4
    source = await read_topic(
        bootstrap, TOPIC, where=lambda r: _event_id(r.value) == poison.event_id, expect=1
    )
    dead = await read_topic(
        bootstrap,
        dlq_topic(TOPIC),
        where=lambda r: _event_id(r.value) == poison.event_id,
        expect=1,
        settle=1.0,
    )
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers.items()}
    assert headers[DLQ_ORIGINAL_TOPIC] == TOPIC
    assert headers[DLQ_ORIGINAL_PARTITION] == str(source[0].partition)
    assert headers[DLQ_ORIGINAL_OFFSET] == str(source[0].offset)
    assert headers[DLQ_CONSUMER_GROUP] == group
    assert headers[DLQ_ATTEMPTS] == "4"
    assert headers[DLQ_ERROR].startswith("ValueError")
    assert headers["ce-type"] == "AssessmentCompleted"
    assert dead[0].key == patient.encode()
    assert not await _has_effect(pool, poison.event_id)


async def test_malformed_message_goes_to_dlq_with_reason(pool, stack_endpoints) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    key = f"p-{uuid.uuid4()}".encode()
    group = f"poison-{uuid.uuid4().hex[:8]}"
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        return None

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    await _start(runtime)
    try:
        await produce_raw(bootstrap, TOPIC, b"{not json", key=key)
        # Every group reading the topic parks its own copy: look for this group's.
        dead = await read_topic(
            bootstrap,
            dlq_topic(TOPIC),
            where=lambda r: r.key == key and r.headers.get(DLQ_CONSUMER_GROUP) == group.encode(),
            expect=1,
            timeout=60,
            settle=1.0,
        )
    finally:
        await runtime.stop()
    assert len(dead) == 1
    assert dead[0].headers[DLQ_ATTEMPTS] == b"1"
    assert dead[0].headers[DLQ_CONSUMER_GROUP] == group.encode()


async def test_consumer_sigkilled_between_effect_and_offset_commit_loses_and_duplicates_nothing(
    pool, stack_endpoints, fresh_database_url: str
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"kill-{uuid.uuid4().hex[:8]}"
    events = [wrap(sample_assessment(patient), patient, sequence=n) for n in (1, 2, 3)]
    command = [
        sys.executable,
        str(PROCS / "counter_consumer.py"),
        "--bootstrap",
        bootstrap,
        "--database-url",
        fresh_database_url,
        "--schema",
        SCHEMA,
        "--group",
        group,
        "--subject",
        patient,
    ]
    first = spawn_ready([*command, "--kill-after-effect", str(events[1].event_id)])
    # One event per poll (records of one poll share a transaction and an offset commit): event
    # 2 is produced once event 1's offset is committed (commits linger `COMMIT_LINGER_S`), so
    # the kill falls between event 2's effect and its offset commit; event 3 comes after it.
    await produce(bootstrap, events[0])
    await eventually(lambda: _has_effect(pool, events[0].event_id), timeout=60)
    await eventually(lambda: _committed_offsets(bootstrap, group), timeout=60)
    await produce(bootstrap, events[1])
    output, _ = first.communicate(timeout=180)
    assert first.returncode == -9, output.decode()[-3000:]
    applied = await pool.fetch("SELECT event_id FROM effects WHERE subject = $1", patient)
    assert {r["event_id"] for r in applied} == {events[0].event_id, events[1].event_id}
    await produce(bootstrap, events[2])

    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await eventually(lambda: _has_effect(pool, events[2].event_id), timeout=120)
    finally:
        second.terminate()
        output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output.decode()[-3000:]
    rows = await pool.fetch(
        "SELECT event_id FROM effects WHERE subject = $1 ORDER BY sequence", patient
    )
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert b'"event_duplicate"' in output, "event 2 must be redelivered and dropped by the inbox"


async def _committed_offsets(bootstrap: str, group: str) -> int:
    """How many of the group's partitions have a committed offset."""
    from carebridge_ops.kafkaio import admin_client, describe_group

    async with admin_client(bootstrap) as admin:
        return len((await describe_group(admin, group)).committed)


def spawn_ready(command: list[str]) -> subprocess.Popen[bytes]:
    return spawn_until(command, b"consumer-ready")


def _event_id(value: bytes) -> uuid.UUID | None:
    try:
        return Envelope.from_bytes(value).event_id
    except Exception:
        return None


async def test_dead_letters_of_one_group_are_redriven_once_and_poison_stays(
    pool, stack_endpoints
) -> None:
    from carebridge_ops.dead_letters import REDRIVEN_FROM, redrive

    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    failed_group = f"g-{uuid.uuid4().hex[:8]}"
    envelope = wrap(sample_assessment(patient), patient)

    def letter(group: str) -> list[tuple[str, bytes]]:
        return [
            (DLQ_ORIGINAL_TOPIC, TOPIC.encode()),
            (DLQ_CONSUMER_GROUP, group.encode()),
            (DLQ_ATTEMPTS, b"5"),
            ("ce-type", b"AssessmentCompleted"),
        ]

    for value, group in (
        (envelope.to_bytes(), failed_group),
        (b"{not json", failed_group),
        (envelope.to_bytes(), "some-other-group"),
    ):
        await produce_raw(
            bootstrap, dlq_topic(TOPIC), value, key=patient.encode(), headers=letter(group)
        )
    first = await redrive(bootstrap, dlq_topic(TOPIC), failed_group=failed_group)
    second = await redrive(bootstrap, dlq_topic(TOPIC), failed_group=failed_group)
    assert (first.redriven, first.invalid) == (1, 1)
    assert second.redriven == 0, "a second run never republishes what was already redriven"
    back = await read_topic(
        bootstrap, TOPIC, where=lambda r: r.key == patient.encode(), expect=1, settle=1.0
    )
    assert len(back) == 1
    assert back[0].headers["ce-type"] == b"AssessmentCompleted"
    assert REDRIVEN_FROM in back[0].headers and DLQ_ATTEMPTS not in back[0].headers


async def test_sigterm_finishes_the_in_flight_event_and_commits_its_offset(
    pool, stack_endpoints, fresh_database_url: str
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"term-{uuid.uuid4().hex[:8]}"
    envelope = wrap(sample_assessment(patient), patient)
    command = [sys.executable, str(PROCS / "counter_consumer.py"), "--bootstrap", bootstrap,
               "--database-url", fresh_database_url, "--schema", SCHEMA, "--group", group,
               "--subject", patient]  # fmt: skip

    slow = spawn_ready([*command, "--slow-seconds", "3"])
    await produce(bootstrap, envelope)
    assert slow.stdout is not None
    for line in iter(slow.stdout.readline, b""):
        if b"handler-started" in line:
            break
    slow.terminate()  # SIGTERM while the handler sleeps
    output, _ = slow.communicate(timeout=60)
    assert slow.returncode == 0, output.decode()[-3000:]
    assert await _has_effect(pool, envelope.event_id), "the in-flight event was finished"

    again = spawn_ready(command)
    # A later event on the same partition: had the offset not been committed, the first
    # event would be redelivered before this one is applied.
    marker = wrap(sample_assessment(patient), patient, sequence=2)
    await produce(bootstrap, marker)
    await eventually(lambda: _has_effect(pool, marker.event_id), what="the marker event")
    again.terminate()
    output, _ = again.communicate(timeout=60)
    assert b'"event_duplicate"' not in output, "the offset was committed before exit"
    count = await pool.fetchval(
        "SELECT count(*) FROM effects WHERE event_id = $1", envelope.event_id
    )
    assert count == 1


async def test_database_restart_mid_event_is_retried_not_dead_lettered(
    pool, stack_endpoints
) -> None:
    """A PostgreSQL restart ends the sessions in use (57P01; asyncpg reports a lost
    connection). That is the database's trouble, not the event's, so it must not spend the
    event's attempts: here the session is terminated more times than the runtime has attempts,
    and the event must still be applied once and never dead-lettered."""
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"pgdown-{uuid.uuid4().hex[:8]}"
    envelope = wrap(sample_assessment(patient), patient)
    terminated: list[int] = []

    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject != patient:
            return
        if len(terminated) < 5:  # more terminations than attempts
            terminated.append(1)
            # what PostgreSQL does to every session on `pg_ctl stop -m fast`
            await ctx.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await ctx.conn.execute(
            "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
            ctx.envelope.event_id,
            patient,
            ctx.envelope.sequence,
        )

    runtime = _runtime(pool, subscriptions, bootstrap, group, attempts=3)

    await _start(runtime)
    try:
        await produce(bootstrap, envelope)
        await eventually(lambda: _has_effect(pool, envelope.event_id))
    finally:
        await runtime.stop()
    assert len(terminated) == 5
    dead = await read_topic(
        bootstrap,
        dlq_topic(TOPIC),
        where=lambda r: _event_id(r.value) == envelope.event_id,
        timeout=5.0,
    )
    assert dead == []


async def test_consumer_connects_with_a_comma_separated_bootstrap_list(
    pool, stack_endpoints
) -> None:
    """Regression (found by the chaos suite's 3-broker run): KAFKA_BOOTSTRAP_SERVERS lists
    every broker, comma-separated. FastStream took the whole string for one host, so every
    consuming service failed to start against a cluster. The runtime now splits the list."""
    bootstrap = stack_endpoints.kafka_bootstrap
    servers = f"{bootstrap},{bootstrap}"  # two entries, as a multi-broker list looks
    patient = f"p-{uuid.uuid4()}"
    envelope = wrap(sample_assessment(patient), patient)
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            await ctx.conn.execute(
                "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
                ctx.envelope.event_id,
                patient,
                ctx.envelope.sequence,
            )

    runtime = ConsumerRuntime(
        bootstrap_servers=servers,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=f"multi-{uuid.uuid4().hex[:8]}",
        producer_factory=lambda: make_producer(servers, "test-dlq"),
        auto_offset_reset="latest",  # only what is published below, not the shared history
    )

    await asyncio.wait_for(runtime.start(), timeout=60)
    try:
        await eventually(lambda: _joined(runtime))
        await produce(bootstrap, envelope)
        await eventually(lambda: _has_effect(pool, envelope.event_id))
    finally:
        await runtime.stop()


async def _joined(runtime: ConsumerRuntime) -> bool:
    return runtime.joined


async def test_an_event_from_a_producer_that_does_not_own_the_topic_is_dead_lettered_and_a_redriven_one_passes(
    pool, stack_endpoints
) -> None:
    """Event provenance (ADR 0013): only intake publishes on the assessments topic, so an
    envelope there that names another producer is parked once with the reason, has no effect
    and does not hold up the partition; a genuine event that failed and is redriven by ops
    keeps its producer and is applied."""
    from carebridge_ops.dead_letters import redrive
    from carebridge_shared.metrics import EVENTS_PRODUCER_REFUSED

    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"provenance-{uuid.uuid4().hex[:8]}"
    forged = wrap(sample_assessment(patient), patient, sequence=1, producer="booking")
    failing_once = wrap(sample_assessment(patient), patient, sequence=2)
    healthy = wrap(sample_assessment(patient), patient, sequence=3)
    failures: list[uuid.UUID] = []
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject != patient:
            return
        if ctx.envelope.event_id == failing_once.event_id and not failures:
            failures.append(ctx.envelope.event_id)
            raise ValueError("fails the first time only")
        await ctx.conn.execute(
            "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
            ctx.envelope.event_id,
            patient,
            ctx.envelope.sequence,
        )

    runtime = _runtime(pool, subscriptions, bootstrap, group, attempts=1)

    refused_before = EVENTS_PRODUCER_REFUSED.labels(group, TOPIC)._value.get()
    await _start(runtime)
    try:
        for envelope in (forged, failing_once, healthy):  # one key: one partition, in order
            await produce(bootstrap, envelope)
        await eventually(lambda: _has_effect(pool, healthy.event_id), timeout=60)
        letters = await read_topic(
            bootstrap,
            dlq_topic(TOPIC),
            where=lambda r: (
                r.key == patient.encode() and r.headers.get(DLQ_CONSUMER_GROUP) == group.encode()
            ),
            expect=2,
            timeout=60,
            settle=1.0,
        )
        by_event = {_event_id(letter.value): letter for letter in letters}
        assert set(by_event) == {forged.event_id, failing_once.event_id}
        refusal = by_event[forged.event_id].headers
        assert refusal[DLQ_ERROR].decode() == (
            f"ProducerNotTopicOwner: producer 'booking' is not 'intake', the owner of {TOPIC}"
        )
        assert refusal[DLQ_ATTEMPTS] == b"1"
        assert EVENTS_PRODUCER_REFUSED.labels(group, TOPIC)._value.get() == refused_before + 1
        assert not await _has_effect(pool, forged.event_id)

        result = await redrive(bootstrap, dlq_topic(TOPIC), failed_group=group)
        assert result.redriven == 2  # both letters parse; the forged one is refused again
        await eventually(lambda: _has_effect(pool, failing_once.event_id), timeout=60)
        again = await read_topic(
            bootstrap,
            dlq_topic(TOPIC),
            where=lambda r: (
                _event_id(r.value) == forged.event_id
                and r.headers.get(DLQ_CONSUMER_GROUP) == group.encode()
            ),
            expect=2,
            timeout=60,
            settle=1.0,
        )
        assert len(again) == 2, "the redriven forgery is parked again, never applied"
    finally:
        await runtime.stop()
    assert not await _has_effect(pool, forged.event_id)
    rows = await pool.fetch(
        "SELECT event_id FROM effects WHERE subject = $1 ORDER BY sequence", patient
    )
    assert [r["event_id"] for r in rows] == [failing_once.event_id, healthy.event_id]


def _record(envelope: Envelope | None, offset: int, value: bytes | None = None) -> ConsumerRecord:  # type: ignore[type-arg]
    body = envelope.to_bytes() if envelope is not None else value
    return ConsumerRecord(
        topic=TOPIC, partition=0, offset=offset, timestamp=0, timestamp_type=0,
        key=b"k", value=body, checksum=None, serialized_key_size=1,
        serialized_value_size=len(body or b""),
        headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    )  # fmt: skip


async def test_a_batch_handler_gets_a_polls_fresh_events_at_once_and_a_poison_one_alone(
    pool, stack_endpoints
) -> None:
    """Issue 16: one set-based inbox claim per poll; a copy of an event in the same poll or a
    redelivery never reaches the handler; the outbox rows of a batch carry per-subject
    sequences, the cause and the trace of each event; a poll with a poison record is applied
    one by one, the poison dead-lettered, the others handed over as batches of one."""
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"batch-{uuid.uuid4().hex[:8]}"
    outbox = Outbox("intake", SCHEMA)
    calls: list[list[uuid.UUID]] = []
    subscriptions = Subscriptions()

    @subscriptions.on_batch(AssessmentCompleted)
    async def apply(batch: Sequence[tuple[AssessmentCompleted, EventContext]]) -> None:
        calls.append([ctx.envelope.event_id for _, ctx in batch])
        conn = batch[0][1].conn
        await conn.executemany(
            "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
            [(ctx.envelope.event_id, patient, ctx.envelope.sequence) for _, ctx in batch],
        )
        await outbox.add_many(conn, [ctx.staged(event) for event, ctx in batch])

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    events = [wrap(sample_assessment(patient), patient, sequence=i) for i in range(1, 7)]
    await _start(runtime)
    try:
        e1, e2, e3, e4, e5, e6 = events
        await runtime.process_batch([_record(e1, 0), _record(e2, 1), _record(e1, 2),
                                     _record(e3, 3)])  # fmt: skip
        await runtime.process_batch([_record(e2, 4), _record(e4, 5)])  # e2 redelivered
        await runtime.process_batch([_record(e5, 6), _record(None, 7, b"{not json"),
                                     _record(e6, 8)])  # fmt: skip
    finally:
        await runtime.stop()
    ids = [e.event_id for e in events]
    assert calls == [[ids[0], ids[1], ids[2]], [ids[3]], [ids[4]], [ids[5]]]
    rows = await pool.fetch("SELECT event_id FROM effects WHERE subject = $1", patient)
    assert sorted(r["event_id"] for r in rows) == sorted(ids)
    staged = await pool.fetch(
        "SELECT payload, headers FROM outbox WHERE message_key = $1 ORDER BY id", patient
    )
    published = [Envelope.from_bytes(bytes(r["payload"])) for r in staged]
    assert [e.sequence for e in published] == [1, 2, 3, 4, 5, 6]
    assert [e.causation_id for e in published] == ids
    assert [e.correlation_id for e in published] == [e.correlation_id for e in events]
    assert all("0af7651916cd43dd8448eb211c80319c" in r["headers"] for r in staged)
    letters = await read_topic(bootstrap, dlq_topic(TOPIC), where=lambda r: r.headers.get(
        DLQ_CONSUMER_GROUP) == group.encode())  # fmt: skip
    assert [int(r.headers[DLQ_ORIGINAL_OFFSET]) for r in letters] == [7]
