"""Inbox: a consumer records each event it applies, in the transaction of the effect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

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


CLAIM_MANY = (
    'INSERT INTO inbox (consumer, event_id, topic, partition, "offset")'
    " SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::bigint[])"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)


@dataclass(frozen=True, slots=True)
class Claim:
    event_id: uuid.UUID
    topic: str
    partition: int
    offset: int


async def claim_many(conn: Connection, consumer: str, claims: Sequence[Claim]) -> set[uuid.UUID]:
    """The event ids `consumer` sees for the first time, claimed in one statement; the rest
    (redeliveries, and repeats of an id within `claims`) are not fresh.

    Must run inside the transaction that applies the effects, like `claim`.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim_many must run inside the effects' transaction")
    if not claims:
        return set()
    rows = await conn.fetch(
        CLAIM_MANY,
        consumer,
        [c.event_id for c in claims],
        [c.topic for c in claims],
        [c.partition for c in claims],
        [c.offset for c in claims],
    )
    return {row[0] for row in rows}
