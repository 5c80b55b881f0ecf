"""Runs the outbox relay; --kill-after-publish SIGKILLs it after Kafka acknowledged a batch
and before the rows are marked published."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence

from carebridge_shared.db import create_pool
from carebridge_shared.kafka import make_producer
from carebridge_shared.logging import configure_logging
from carebridge_shared.relay import OutboxRelay, OutboxRow


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--kill-after-publish", action="store_true")
    args = parser.parse_args()
    configure_logging("relay-proc", "INFO")

    async def kill(_rows: Sequence[OutboxRow]) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    pool = await create_pool(args.database_url, args.schema)
    relay = OutboxRelay(
        pool,
        args.schema,
        lambda: make_producer(args.bootstrap, "relay-proc"),
        after_publish=kill if args.kill_after_publish else None,
    )
    published = 1
    while published:
        published = await relay.publish_pending()
    await relay.close()
    print("relay-drained", flush=True)
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
