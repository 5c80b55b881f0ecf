"""Kafka clients with the settings the delivery guarantees need."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from carebridge_shared.logging import get_logger

log = get_logger(__name__)


def make_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    """Idempotent producer that waits for every in-sync replica (no loss, no reordering)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
        retry_backoff_ms=200,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: list[str], *, partitions: int, replication_factor: int
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="carebridge-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=t, num_partitions=partitions, replication_factor=replication_factor
                    )
                    for t in missing
                ]
            )
            log.info("topics_created", topics=missing)
        return missing
    finally:
        await admin.close()
