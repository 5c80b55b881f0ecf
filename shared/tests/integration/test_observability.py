"""What ops watch, against real Kafka and PostgreSQL: consumer lag of a stuck handler, outcome
counters, and the trace context carried from a consumed record through the outbox to Kafka."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from carebridge_contracts import AssessmentCompleted, Topic, dlq_topic, kafka_headers
from carebridge_devstack.testing import (
    eventually,
    migrated_pool,
    produce,
    produce_raw,
    read_topic,
    sample_assessment,
    service_context,
    wrap,
)
from carebridge_shared import tracing
from carebridge_shared.consumer import (
    DLQ_CONSUMER_GROUP,
    ConsumerRuntime,
    EventContext,
    RetryPolicy,
    Subscriptions,
)
from carebridge_shared.health import outbox_backlog
from carebridge_shared.kafka import make_producer
from carebridge_shared.outbox import Outbox
from carebridge_shared.relay import OutboxRelay

pytestmark = pytest.mark.integration

PROCS = Path(__file__).parent.parent / "procs"
SCHEMA = "observability_test"
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


def _runtime(pool, subscriptions, bootstrap: str, group: str) -> ConsumerRuntime:  # type: ignore[no-untyped-def]
    return ConsumerRuntime(
        bootstrap_servers=bootstrap,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=group,
        producer_factory=lambda: make_producer(bootstrap, "test-observability"),
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1),
        auto_offset_reset="latest",  # new group: see only what this test publishes
    )


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_stuck_handler_shows_as_growing_lag_that_drains_once_it_moves(
    pool, stack_endpoints
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"lag-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            await release.wait()  # stuck until the test lets it go

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    await runtime.start()
    await asyncio.wait_for(runtime.until_joined(), timeout=60)
    try:
        events = [wrap(sample_assessment(patient), patient, sequence=n) for n in range(1, 5)]
        for envelope in events:
            await produce(bootstrap, envelope)

        async def stuck_behind() -> bool:
            # the first record is in the handler, the three behind it wait (a new group has
            # no commit yet, so its lag counts from the position, past the in-flight record)
            return await runtime.sample_lag() >= len(events) - 1

        await eventually(stuck_behind, timeout=60, what="lag of the stuck consumer")
        gauge = sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "carebridge_consumer_lag"
            for sample in metric.samples
            if sample.labels["consumer"] == group
        )
        assert gauge >= len(events) - 1

        release.set()

        async def drained() -> bool:
            return await runtime.sample_lag() == 0

        await eventually(drained, timeout=60, what="lag back to 0")
    finally:
        release.set()
        await runtime.stop()
    applied = _sample(
        "carebridge_messages_consumed_total", consumer=group, topic=TOPIC, outcome="applied"
    )
    assert applied >= len(events)
    timed = _sample(
        "carebridge_handler_duration_seconds_count", consumer=group, topic=TOPIC, outcome="applied"
    )
    assert timed >= len(events)


async def test_poison_is_counted_as_dead_lettered_and_keeps_its_trace(
    pool, stack_endpoints
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"poison-{uuid.uuid4().hex[:8]}"
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        return None

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    await runtime.start()
    await asyncio.wait_for(runtime.until_joined(), timeout=60)
    try:
        await produce_raw(
            bootstrap,
            TOPIC,
            b"{not json",
            key=patient.encode(),
            headers=[(tracing.TRACEPARENT, traceparent.encode())],
        )
        letters = await read_topic(
            bootstrap, dlq_topic(TOPIC), where=lambda r: r.key == patient.encode(), expect=1
        )
    finally:
        await runtime.stop()
    assert letters[0].headers[tracing.TRACEPARENT] == traceparent.encode()
    # The topic is shared: poison another test publishes meanwhile is parked by this group too,
    # so the metrics must equal every letter this group parked, whoever published it.
    parked = await read_topic(
        bootstrap,
        dlq_topic(TOPIC),
        where=lambda r: dict(r.headers or ()).get(DLQ_CONSUMER_GROUP) == group.encode(),
    )
    dead = _sample(
        "carebridge_messages_consumed_total", consumer=group, topic=TOPIC, outcome="dead_lettered"
    )
    assert dead == len(parked) >= 1
    assert _sample("carebridge_events_dead_lettered_total", consumer=group) == len(parked)


async def test_trace_context_flows_from_a_consumed_record_through_the_outbox_to_kafka(
    pool, stack_endpoints
) -> None:
    tracing.configure_tracing("observability-test")
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    follow_up = f"{patient}-next"  # what the handler writes, keyed apart from what it reads
    group = f"trace-{uuid.uuid4().hex[:8]}"
    outbox = Outbox("observability", SCHEMA)
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            await outbox.add(ctx.conn, sample_assessment(follow_up), subject=follow_up)

    runtime = _runtime(pool, subscriptions, bootstrap, group)

    trace_id, parent_span = secrets.token_hex(16), secrets.token_hex(8)
    incoming = wrap(sample_assessment(patient), patient)
    await runtime.start()
    await asyncio.wait_for(runtime.until_joined(), timeout=60)
    try:
        await produce_raw(
            bootstrap,
            TOPIC,
            incoming.to_bytes(),
            key=patient.encode(),
            headers=[
                *kafka_headers(incoming),
                (tracing.TRACEPARENT, f"00-{trace_id}-{parent_span}-01".encode()),
            ],
        )

        async def outbox_row() -> dict[str, str] | None:
            raw = await pool.fetchval(
                "SELECT headers FROM outbox WHERE message_key = $1", follow_up
            )
            return json.loads(raw) if raw else None

        stored = await eventually(outbox_row, timeout=60, what="the handler's outbox row")
    finally:
        await runtime.stop()
    written_in = stored[tracing.TRACEPARENT]
    assert tracing.trace_id_of(written_in) == trace_id, "the row carries the consumer's trace"
    assert parent_span not in written_in, "a child span of the consumed record, not its parent"
    assert (await outbox_backlog(pool)).rows == 1

    relay = OutboxRelay(pool, SCHEMA, lambda: make_producer(bootstrap, "test-relay"))
    assert await relay.publish_pending() == 1
    await relay.close()
    published = await read_topic(
        bootstrap, TOPIC, where=lambda r: r.key == follow_up.encode(), expect=1
    )
    sent_with = published[0].headers[tracing.TRACEPARENT].decode()
    assert tracing.trace_id_of(sent_with) == trace_id
    assert sent_with != written_in, "the relay's publish span is the consumer's parent"
    assert (await outbox_backlog(pool)).rows == 0
