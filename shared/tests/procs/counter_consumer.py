"""A consumer process for fault tests: records one effect row per AssessmentCompleted.

--kill-after-effect EVENT_ID SIGKILLs the process right after that event's effect committed,
before FastStream commits its offset.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import uuid
from pathlib import Path

from carebridge_contracts import AssessmentCompleted, Envelope
from carebridge_contracts.registry import all_topics_with_dlq
from carebridge_devstack.testing import service_context
from carebridge_shared.consumer import ConsumerRuntime, EventContext, RetryPolicy, Subscriptions
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.kafka import ensure_topics, make_producer
from carebridge_shared.logging import configure_logging

MIGRATIONS = Path(__file__).parent / "migrations"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--kill-after-effect", default=None)
    parser.add_argument("--slow-seconds", type=float, default=0.0)
    parser.add_argument("--offset-reset", choices=["earliest", "latest"], default="latest")
    args = parser.parse_args()
    configure_logging("counter-consumer", "INFO")
    kill_on = uuid.UUID(args.kill_after_effect) if args.kill_after_effect else None

    pool = await create_pool(args.database_url, args.schema)
    await migrate(pool, args.schema, MIGRATIONS)
    await ensure_topics(args.bootstrap, all_topics_with_dlq(), partitions=3, replication_factor=1)

    async def after_effect(envelope: Envelope) -> None:
        if envelope.event_id == kill_on:
            os.kill(os.getpid(), signal.SIGKILL)

    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def record(event: AssessmentCompleted, ctx: EventContext) -> None:
        if ctx.envelope.subject != args.subject:
            return
        if args.slow_seconds:
            print("handler-started", flush=True)
            await asyncio.sleep(args.slow_seconds)
        await ctx.conn.execute(
            "INSERT INTO effects (event_id, subject, sequence) VALUES ($1, $2, $3)",
            ctx.envelope.event_id,
            ctx.envelope.subject,
            ctx.envelope.sequence,
        )

    runtime = ConsumerRuntime(
        bootstrap_servers=args.bootstrap,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=args.group,
        producer_factory=lambda: make_producer(args.bootstrap, "counter-consumer"),
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.2),
        after_effect=after_effect,
        auto_offset_reset=args.offset_reset,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await runtime.start()
    await asyncio.wait_for(runtime.until_joined(), timeout=60)
    print("consumer-ready", flush=True)
    await stop.wait()
    await runtime.stop()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
