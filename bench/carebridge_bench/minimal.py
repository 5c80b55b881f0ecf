"""The bar of the throughput comparison: a hand-written exactly-once stage, as fast as it can be.

It does the stage's work with the same guarantees and nothing else: per poll
(``getmany``, as many records as the services take), ONE asyncpg transaction holding

1. the set-based inbox claim (``INSERT ... SELECT FROM unnest ... ON CONFLICT DO NOTHING
   RETURNING``) and, in the same statement, the effect rows of the freshly claimed events;
2. the per-patient sequence numbers of the output events (one upsert for the poll's patients);
3. the outbox rows (one ``unnest`` insert), and the "published" mark of the previous poll's rows;

then it produces the output records itself (no relay, no NOTIFY), waits for their acks and
commits the offsets. Envelopes are read with ``json.loads`` and written with ``json.dumps``:
no model validation. A crash between commit and produce leaves unpublished outbox rows, which
is all a real deployment would need to recover; the bench never crashes it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from carebridge_contracts.envelope import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
)
from carebridge_shared.consumer import MAX_POLL_RECORDS
from carebridge_shared.db import Connection, create_pool, migrate
from carebridge_shared.kafka import KafkaSecurity, bootstrap_list, make_producer
from carebridge_shared.settings import ServiceSettings

MINIMAL_SCHEMA = "bench_minimal"
OUTPUT_TYPE = "TherapistRequested"
PRODUCER = "referral"  # the owner of the output topic, as for the stage

CLAIM_AND_APPLY = """
WITH batch AS (
    SELECT * FROM unnest($2::uuid[], $3::int[], $4::bigint[], $5::uuid[], $6::text[],
                         $7::uuid[]) AS b(event_id, partition, "offset", referral_id,
                                          patient_id, assessment_id)
), claimed AS (
    INSERT INTO inbox (consumer, event_id, topic, partition, "offset")
    SELECT $1, event_id, $8, partition, "offset" FROM batch
    ON CONFLICT DO NOTHING RETURNING event_id
), applied AS (
    INSERT INTO stage_effects (referral_id, patient_id, assessment_id)
    SELECT referral_id, patient_id, assessment_id FROM batch
    WHERE event_id IN (SELECT event_id FROM claimed)
)
SELECT event_id FROM claimed
"""
NEXT_SEQUENCES = """
INSERT INTO stream_sequences (topic, subject, last_sequence)
SELECT $1, subject, n FROM unnest($2::text[], $3::bigint[]) AS s(subject, n)
ON CONFLICT (topic, subject)
DO UPDATE SET last_sequence = stream_sequences.last_sequence + EXCLUDED.last_sequence
RETURNING subject, last_sequence
"""
ADD_OUTBOX = """
INSERT INTO outbox (event_id, topic, message_key, event_type, event_version, payload, headers)
SELECT event_id, $1, message_key, $2, 1, payload, '{}'::jsonb
FROM unnest($3::uuid[], $4::text[], $5::bytea[]) AS o(event_id, message_key, payload)
RETURNING id
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"


class Fresh:
    """One claimed input event and the output event it becomes."""

    __slots__ = ("assessment_id", "correlation_id", "event_id", "patient_id", "referral_id",
                 "state")  # fmt: skip

    def __init__(self, envelope: dict[str, Any]) -> None:
        data = envelope["data"]
        self.event_id = uuid.UUID(envelope["event_id"])
        self.correlation_id: str = envelope["correlation_id"]
        self.patient_id: str = data["patient_id"]
        self.assessment_id = uuid.UUID(data["assessment_id"])
        self.state: str = data["state"]
        self.referral_id = uuid.uuid4()


def output_envelope(event: Fresh, sequence: int, event_id: uuid.UUID) -> bytes:
    return json.dumps(
        {
            "event_id": str(event_id),
            "type": OUTPUT_TYPE,
            "version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "producer": PRODUCER,
            "correlation_id": event.correlation_id,
            "causation_id": str(event.event_id),
            "subject": event.patient_id,
            "sequence": sequence,
            "data": {
                "patient_id": event.patient_id,
                "referral_id": str(event.referral_id),
                "state": event.state,
                "modality": "CBT",
                "urgency": "routine",
                "requested_by": "intake",
                "requesting_clinician_id": None,
            },
        },
        separators=(",", ":"),
    ).encode()


async def apply_poll(
    conn: Connection,
    group: str,
    input_topic: str,
    output_topic: str,
    records: list[ConsumerRecord[bytes, bytes]],
    published: list[int],
) -> tuple[list[tuple[bytes, bytes, list[tuple[str, bytes]]]], list[int]]:
    """The poll's transaction; returns the records to produce and their outbox ids."""
    events = [Fresh(json.loads(r.value or b"")) for r in records]
    async with conn.transaction():
        claimed = {
            row[0]
            for row in await conn.fetch(
                CLAIM_AND_APPLY,
                group,
                [e.event_id for e in events],
                [r.partition for r in records],
                [r.offset for r in records],
                [e.referral_id for e in events],
                [e.patient_id for e in events],
                [e.assessment_id for e in events],
                input_topic,
            )
        }
        fresh = [e for e in events if e.event_id in claimed]
        if published:
            await conn.execute(MARK_PUBLISHED, published)
        if not fresh:
            return [], []
        counts = Counter(e.patient_id for e in fresh)
        rows = await conn.fetch(NEXT_SEQUENCES, output_topic, list(counts), list(counts.values()))
        last: dict[str, int] = {row[0]: row[1] for row in rows}
        next_sequence = {subject: last[subject] - n + 1 for subject, n in counts.items()}
        out_ids: list[uuid.UUID] = []
        keys: list[str] = []
        payloads: list[bytes] = []
        outgoing: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        for event in fresh:
            sequence = next_sequence[event.patient_id]
            next_sequence[event.patient_id] = sequence + 1
            event_id = uuid.uuid4()
            payload = output_envelope(event, sequence, event_id)
            out_ids.append(event_id)
            keys.append(event.patient_id)
            payloads.append(payload)
            headers = [
                (HEADER_TYPE, OUTPUT_TYPE.encode()),
                (HEADER_VERSION, b"1"),
                (HEADER_EVENT_ID, str(event_id).encode()),
                (HEADER_CORRELATION_ID, event.correlation_id.encode()),
            ]
            outgoing.append((event.patient_id.encode(), payload, headers))
        added = await conn.fetch(ADD_OUTBOX, output_topic, OUTPUT_TYPE, out_ids, keys, payloads)
    return outgoing, [row[0] for row in added]


async def run_minimal(
    settings: ServiceSettings,
    group: str,
    stop: asyncio.Event,
    *,
    input_topic: str,
    output_topic: str,
    migrations: Any,
    ready: str,
) -> None:
    pool = await create_pool(settings.database_url, MINIMAL_SCHEMA, max_size=2)
    await migrate(pool, MINIMAL_SCHEMA, migrations)
    security = KafkaSecurity.from_settings(settings)
    consumer = AIOKafkaConsumer(
        input_topic,
        bootstrap_servers=bootstrap_list(settings.kafka_bootstrap_servers),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security.client_options(),
    )
    producer: AIOKafkaProducer = make_producer(
        settings.kafka_bootstrap_servers, client_id=group, security=security
    )
    await producer.start()
    await consumer.start()
    print(ready, flush=True)
    published: list[int] = []
    try:
        async with pool.acquire() as conn:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=MAX_POLL_RECORDS)
                records = [r for partition in batches.values() for r in partition]
                if not records:
                    continue
                outgoing, published = await apply_poll(
                    conn, group, input_topic, output_topic, records, published
                )
                acks = [
                    await producer.send(output_topic, value=value, key=key, headers=headers)
                    for key, value, headers in outgoing
                ]
                await asyncio.gather(*acks)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
