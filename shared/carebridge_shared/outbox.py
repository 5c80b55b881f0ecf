"""Transactional outbox: the event row is written in the same transaction as the state."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection

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
        await conn.execute(
            "INSERT INTO outbox (event_id, topic, message_key, event_type, event_version,"
            " payload, headers) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
            envelope.event_id,
            topic,
            subject,
            envelope.type,
            envelope.version,
            envelope.to_bytes(),
            json.dumps(headers),
        )
        # The relay of this process is woken when the connection is released (after commit).
        wakeup.after_release(conn, self.channel)
        return envelope
