"""Transactional outbox: the event row is written in the same transaction as the state."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from opentelemetry.context import Context

from carebridge_contracts import BaseEvent, Envelope, kafka_headers
from carebridge_contracts.registry import topic_for
from carebridge_shared import tracing, wakeup
from carebridge_shared.correlation import current_causation_id, current_correlation_id
from carebridge_shared.db import Connection


class OutboxUsageError(RuntimeError):
    """Raised when an event is written outside a transaction (it could be lost or orphaned)."""


class UndeclaredEventError(OutboxUsageError):
    """Raised when a service writes an event class its definition does not declare: the event
    catalog is generated from the declarations, so an undeclared event would be missing there."""


NEXT_SEQUENCES = (
    "INSERT INTO stream_sequences (topic, subject, last_sequence)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
    " ON CONFLICT (topic, subject)"
    " DO UPDATE SET last_sequence = stream_sequences.last_sequence + EXCLUDED.last_sequence"
    " RETURNING topic, subject, last_sequence"
)
ADD_ROWS = (
    "INSERT INTO outbox (event_id, topic, message_key, event_type, event_version, payload,"
    " headers) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
    " $5::int[], $6::bytea[], $7::jsonb[]) RETURNING event_id, id"
)
ADD_ROW = (
    "INSERT INTO outbox (event_id, topic, message_key, event_type, event_version, payload,"
    " headers) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING id"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as the relay publishes it: handed over in memory by the transaction that
    wrote it (`wakeup.hand_over`, after commit), or read from the table."""

    id: int
    topic: str
    key: str
    payload: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Staged:
    """One event for `Outbox.add_many`, with the ids and trace it continues (by default those
    bound to the current request or event)."""

    event: BaseEvent
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    trace: Context | None = None
    subject: str | None = None


def notify_channel(schema: str) -> str:
    """The wake-up topic of a schema's relay (`wakeup`; no PostgreSQL NOTIFY any more)."""
    return f"{schema}_outbox"


class Outbox:
    """Writes envelopes for one producer (service) into its schema's outbox table.

    With `publishes`, only those event classes are accepted (None: any registered event).
    """

    def __init__(
        self,
        producer: str,
        schema: str,
        *,
        publishes: Collection[type[BaseEvent]] | None = None,
    ) -> None:
        self.producer = producer
        self.channel = notify_channel(schema)
        self.publishes = None if publishes is None else frozenset(publishes)

    def _check(self, conn: Connection, event: BaseEvent) -> None:
        if not conn.is_in_transaction():
            raise OutboxUsageError(
                "Outbox.add must run inside the transaction that changes the state "
                "(use `async with conn.transaction():`)"
            )
        if self.publishes is not None and type(event) not in self.publishes:
            raise UndeclaredEventError(
                f"{self.producer} does not declare that it publishes {event.event_type}"
                f" v{event.event_version}: add {type(event).__name__} to PUBLISHES in"
                f" carebridge_{self.producer}/app.py, then run `make docs` (event catalog)"
            )

    async def add_many(self, conn: Connection, staged: Sequence[Staged]) -> list[Envelope]:
        """Stage several events in two statements, whatever their number: one upsert of the
        per-subject sequences, one insert of the rows (in the given order, so per-subject
        order holds). Published only if the caller commits."""
        if not staged:
            return []
        for item in staged:
            self._check(conn, item.event)
        keys = [(str(topic_for(type(i.event))), i.subject or i.event.patient_id) for i in staged]
        counts = Counter(keys)
        ordered = sorted(counts)  # one lock order for every writer: no deadlock between them
        rows = await conn.fetch(
            NEXT_SEQUENCES,
            [topic for topic, _ in ordered],
            [subject for _, subject in ordered],
            [counts[key] for key in ordered],
        )
        following = {(r[0], r[1]): r[2] - counts[(r[0], r[1])] + 1 for r in rows}
        envelopes: list[Envelope] = []
        headers_of: list[dict[str, str]] = []
        payloads: list[bytes] = []
        columns: tuple[list[object], ...] = ([], [], [], [], [], [], [])
        for item, (topic, subject) in zip(staged, keys, strict=True):
            sequence = following[(topic, subject)]
            following[(topic, subject)] = sequence + 1
            envelope = Envelope.wrap(
                item.event,
                producer=self.producer,
                subject=subject,
                sequence=sequence,
                correlation_id=item.correlation_id or current_correlation_id(),
                causation_id=item.causation_id or current_causation_id(),
            )
            headers = {name: value.decode() for name, value in kafka_headers(envelope)}
            tracing.inject(headers, item.trace)
            payload = envelope.to_bytes()
            for column, value in zip(
                columns,
                (envelope.event_id, topic, subject, envelope.type, envelope.version,
                 payload, json.dumps(headers)),
                strict=True,
            ):  # fmt: skip
                column.append(value)
            envelopes.append(envelope)
            headers_of.append(headers)
            payloads.append(payload)
        ids = {event_id: row_id for event_id, row_id in await conn.fetch(ADD_ROWS, *columns)}
        wakeup.hand_over(
            conn,
            self.channel,
            (
                OutboxRow(ids[envelope.event_id], topic, subject, payload, headers)
                for envelope, (topic, subject), payload, headers in zip(
                    envelopes, keys, payloads, headers_of, strict=True
                )
            ),
        )
        return envelopes

    async def add(
        self,
        conn: Connection,
        event: BaseEvent,
        *,
        subject: str | None = None,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
    ) -> Envelope:
        """Stage `event` (keyed by its patient); it is published only if the caller commits."""
        self._check(conn, event)
        topic = str(topic_for(type(event)))
        subject = subject or event.patient_id
        sequence: int = await conn.fetchval(
            "INSERT INTO stream_sequences (topic, subject, last_sequence) VALUES ($1, $2, 1)"
            " ON CONFLICT (topic, subject)"
            " DO UPDATE SET last_sequence = stream_sequences.last_sequence + 1"
            " RETURNING last_sequence",
            topic,
            subject,
        )
        envelope = Envelope.wrap(
            event,
            producer=self.producer,
            subject=subject,
            sequence=sequence,
            correlation_id=correlation_id or current_correlation_id(),
            causation_id=causation_id or current_causation_id(),
        )
        headers = {name: value.decode() for name, value in kafka_headers(envelope)}
        tracing.inject(headers)  # the trace of this transaction (HTTP request or consumed event)
        payload = envelope.to_bytes()
        row_id: int = await conn.fetchval(
            ADD_ROW,
            envelope.event_id,
            topic,
            subject,
            envelope.type,
            envelope.version,
            payload,
            json.dumps(headers),
        )
        # This process's relay gets the row when the connection is released (after commit).
        wakeup.hand_over(conn, self.channel, [OutboxRow(row_id, topic, subject, payload, headers)])
        return envelope
