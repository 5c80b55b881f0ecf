"""The envelope every Kafka message carries, and its Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from carebridge_contracts.errors import InvalidEnvelope, SubjectMismatch, validation_reason
from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import Code, EventTypeName, PatientId, UtcDatetime

HEADER_TYPE = "ce-type"
HEADER_VERSION = "ce-version"
HEADER_EVENT_ID = "ce-id"
HEADER_CORRELATION_ID = "correlation-id"

ENVELOPE_SCHEMA_VERSION = 1


class Envelope(BaseModel):
    """One event on the wire. `data` is the event payload as JSON-compatible values;
    use `carebridge_contracts.parse` to get the typed event back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID
    type: EventTypeName
    version: Annotated[int, Strict(), Field(ge=1)]
    occurred_at: UtcDatetime
    producer: Code
    correlation_id: UUID
    causation_id: UUID | None = None
    subject: PatientId
    sequence: Annotated[int, Strict(), Field(ge=1)]
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: BaseEvent,
        *,
        producer: str,
        subject: str | None = None,
        sequence: int,
        correlation_id: UUID,
        causation_id: UUID | None = None,
        event_id: UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Self:
        """Put `event` in an envelope. `subject` defaults to (and must equal) `event.patient_id`."""
        if subject is None:
            subject = event.patient_id
        elif subject != event.patient_id:
            raise SubjectMismatch(
                f"subject {subject!r} is not the event's patient_id {event.patient_id!r}"
            )
        return cls(
            event_id=event_id or uuid4(),
            type=event.event_type,
            version=event.event_version,
            occurred_at=occurred_at or datetime.now(UTC),
            producer=producer,
            correlation_id=correlation_id,
            causation_id=causation_id,
            subject=subject,
            sequence=sequence,
            data=event.model_dump(mode="json"),
        )

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | str) -> Self:
        """Parse and validate an envelope; raises `InvalidEnvelope` (a `ContractError`)."""
        if isinstance(raw, memoryview):
            raw = raw.tobytes()
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEnvelope(validation_reason(exc)) from exc


def kafka_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    """Headers that let a consumer route on type and version without parsing the value."""
    return [
        (HEADER_TYPE, envelope.type.encode()),
        (HEADER_VERSION, str(envelope.version).encode()),
        (HEADER_EVENT_ID, str(envelope.event_id).encode()),
        (HEADER_CORRELATION_ID, str(envelope.correlation_id).encode()),
    ]


def kafka_key(envelope: Envelope) -> bytes:
    """The partition key: the patient id, so each patient's events stay in order."""
    return envelope.subject.encode()


def type_from_headers(
    headers: Mapping[str, str | bytes | None] | Iterable[tuple[str, str | bytes | None]],
) -> tuple[str, int] | None:
    """(type, version) from Kafka headers, or None when they are absent or malformed
    (a header value may be null or not UTF-8: this never raises)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in (HEADER_TYPE, HEADER_VERSION):
            try:
                text = value.decode() if isinstance(value, bytes) else value
            except UnicodeDecodeError:
                return None
            if not text:
                return None
            found[name] = text
    try:
        return found[HEADER_TYPE], int(found[HEADER_VERSION])
    except (KeyError, ValueError):
        return None
