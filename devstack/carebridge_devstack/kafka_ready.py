"""Readiness of a fresh Kafka cluster beyond "it answers": a group coordinator exists."""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from carebridge_shared.kafka import KafkaSecurity, bootstrap_list

WARM_UP_GROUP = "carebridge-devstack-warm-up"  # asked for, never joined: it commits nothing


async def wait_for_group_coordinator(
    bootstrap: str, security: KafkaSecurity | None, timeout_s: float
) -> bool:
    """Ask for a group's coordinator until the brokers name one (the first ask makes them create
    the consumer-offsets topic); False when `timeout_s` passed first, which only means the
    services' consumers will wait for it themselves."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_list(bootstrap),
        client_id="carebridge-devstack-warm-up",
        **(security or KafkaSecurity()).client_options(),
    )
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                await admin.find_coordinator(WARM_UP_GROUP)
                return True
            except KafkaError:
                await asyncio.sleep(0.5)
        return False
    finally:
        await admin.close()
