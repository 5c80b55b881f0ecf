"""One consuming process of the throughput comparison: the raw baseline or a carebridge stage.

    python -m carebridge_bench.worker baseline --group G
    python -m carebridge_bench.worker minimal --group G
    python -m carebridge_bench.worker stage --group G

Both read the assessments topic and write to the referrals topic, with the Kafka and database
endpoints and settings a service reads (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``,
``CAREBRIDGE_*``). Each prints ``READY`` once it can receive and runs until SIGTERM.

* baseline: a plain aiokafka loop (fetch a batch, produce each record to the output topic with
  the services' idempotent acks=all producer, commit the offsets after the acks). No database.
* minimal: the bar, a hand-written exactly-once stage (``carebridge_bench.minimal``).
* stage: the services' own plumbing: ``ConsumerRuntime`` (inbox + effect in one transaction,
  offset after commit), a trivial effect writing one row and one outbox event, ``OutboxRelay``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from carebridge_bench.minimal import run_minimal
from carebridge_contracts import AssessmentCompleted, TherapistRequested
from carebridge_contracts.registry import Topic, topic_owner
from carebridge_shared.clock import SystemClock
from carebridge_shared.consumer import (
    MAX_POLL_RECORDS,
    ConsumerRuntime,
    EventContext,
    RetryPolicy,
    Subscriptions,
)
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.kafka import KafkaSecurity, bootstrap_list, make_producer
from carebridge_shared.logging import configure_logging
from carebridge_shared.outbox import Outbox
from carebridge_shared.relay import OutboxRelay
from carebridge_shared.settings import ServiceSettings

INPUT_TOPIC = str(Topic.ASSESSMENTS)
OUTPUT_TOPIC = str(Topic.REFERRALS)
STAGE_SCHEMA = "bench_stage"
MIGRATIONS = Path(__file__).parent / "migrations"
READY = "READY"


async def run_baseline(settings: ServiceSettings, group: str, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        INPUT_TOPIC,
        bootstrap_servers=bootstrap_list(settings.kafka_bootstrap_servers),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **KafkaSecurity.from_settings(settings).client_options(),
    )
    producer = make_producer(
        settings.kafka_bootstrap_servers,
        client_id=group,
        security=KafkaSecurity.from_settings(settings),
    )
    await producer.start()
    await consumer.start()
    print(READY, flush=True)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=MAX_POLL_RECORDS)
            records = [r for partition in batches.values() for r in partition]
            if not records:
                continue
            acks = [
                await producer.send(
                    OUTPUT_TOPIC, value=r.value, key=r.key, headers=list(r.headers or ())
                )
                for r in records
            ]
            await asyncio.gather(*acks)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def run_stage(settings: ServiceSettings, group: str, stop: asyncio.Event) -> None:
    configure_logging("bench-stage", settings.log_level)
    pool = await create_pool(
        settings.database_url, STAGE_SCHEMA, max_size=settings.db_pool_max_size
    )
    await migrate(pool, STAGE_SCHEMA, MIGRATIONS)
    # the stage stands in for referral, the owner of the output topic: consumers believe no other
    outbox = Outbox(topic_owner(OUTPUT_TOPIC) or "referral", STAGE_SCHEMA)

    def producer() -> AIOKafkaProducer:
        return make_producer(
            settings.kafka_bootstrap_servers,
            client_id=group,
            security=KafkaSecurity.from_settings(settings),
        )

    relay = OutboxRelay(
        pool,
        STAGE_SCHEMA,
        producer,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_ms / 1000,
    )
    subscriptions = Subscriptions[ServiceSettings]()
    runtime = ConsumerRuntime(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        service=ServiceContext(group, settings, pool, outbox, SystemClock()),
        subscriptions=subscriptions,
        group_id=group,
        producer_factory=producer,
        retry=RetryPolicy(
            settings.consumer_max_attempts,
            settings.consumer_backoff_initial_ms / 1000,
            settings.consumer_backoff_max_ms / 1000,
        ),
        graceful_timeout=settings.shutdown_grace_seconds,
        auto_offset_reset=settings.consumer_offset_reset,
        security=KafkaSecurity.from_settings(settings),
    )

    @subscriptions.on_batch(AssessmentCompleted)
    async def open_referrals(
        batch: Sequence[tuple[AssessmentCompleted, EventContext[ServiceSettings]]],
    ) -> None:
        # set-based, as the services' busiest handlers: one effect statement, one outbox pair
        conn = batch[0][1].conn
        referral_ids = [uuid.uuid4() for _ in batch]
        await conn.executemany(
            "INSERT INTO stage_effects (referral_id, patient_id, assessment_id)"
            " VALUES ($1, $2, $3)",
            [
                (referral_id, event.patient_id, event.assessment_id)
                for referral_id, (event, _) in zip(referral_ids, batch, strict=True)
            ],
        )
        await outbox.add_many(
            conn,
            [
                ctx.staged(
                    TherapistRequested(
                        patient_id=event.patient_id,
                        referral_id=referral_id,
                        state=event.state,
                        modality="CBT",
                        urgency="routine",
                        requested_by="intake",
                    )
                )
                for referral_id, (event, ctx) in zip(referral_ids, batch, strict=True)
            ],
        )

    relay_task = asyncio.create_task(relay.run(stop))
    await runtime.start()
    try:
        await runtime.until_joined()
        print(READY, flush=True)
        await stop.wait()
    finally:
        await runtime.stop()
        await relay_task
        await relay.close()
        await pool.close()


async def _main(kind: str, group: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = ServiceSettings()
    if kind == "baseline":
        await run_baseline(settings, group, stop)
    elif kind == "minimal":
        await run_minimal(
            settings, group, stop, input_topic=INPUT_TOPIC, output_topic=OUTPUT_TOPIC,
            migrations=MIGRATIONS, ready=READY,
        )  # fmt: skip
    else:
        await run_stage(settings, group, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m carebridge_bench.worker")
    parser.add_argument("kind", choices=["baseline", "minimal", "stage"])
    parser.add_argument("--group", required=True, help="consumer group (offsets set by the bench)")
    args = parser.parse_args(argv)
    uvloop.run(_main(args.kind, args.group))  # every loop on the services' event loop


if __name__ == "__main__":
    main()
