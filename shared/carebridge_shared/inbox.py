"""Inbox: a consumer records each event it applies, in the transaction of the effect."""

from __future__ import annotations

import uuid

from carebridge_shared.db import Connection


async def claim(
    conn: Connection,
    consumer: str,
    event_id: uuid.UUID,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> bool:
    """True the first time `consumer` sees `event_id`; False for a redelivery.

    Must run inside the transaction that applies the effect: a rollback forgets the claim too.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim must run inside the effect's transaction")
    inserted = await conn.fetchval(
        'INSERT INTO inbox (consumer, event_id, topic, partition, "offset")'
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
        topic,
        partition,
        offset,
    )
    return bool(inserted)
