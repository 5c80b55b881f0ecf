from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from carebridge_contracts import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
    AppointmentBooked,
    ContractError,
    Envelope,
    InvalidEnvelope,
    SubjectMismatch,
    kafka_headers,
    kafka_key,
    type_from_headers,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}\Z")


@given(
    event_id=st.uuids(),
    type=st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,30}\Z"),
    version=st.integers(min_value=1, max_value=1000),
    occurred_at=aware_datetimes,
    producer=ids,
    correlation_id=st.uuids(),
    causation_id=st.none() | st.uuids(),
    subject=ids,
    sequence=st.integers(min_value=1, max_value=2**53),
    data=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
)
def test_envelope_round_trips_through_bytes(**fields: Any) -> None:
    envelope = Envelope(**fields)
    raw = envelope.to_bytes()
    assert Envelope.from_bytes(raw) == envelope
    assert envelope.occurred_at.utcoffset() == timedelta(0)
    assert envelope.occurred_at == fields["occurred_at"]


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": uuid4(),
        "type": "AppointmentBooked",
        "version": 1,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "producer": "booking",
        "correlation_id": uuid4(),
        "subject": "pat-1",
        "sequence": 1,
        "data": {},
    }
    fields.update(overrides)
    return fields


def test_naive_occurred_at_is_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Envelope(**_fields(occurred_at=datetime(2026, 1, 1)))
    raw = json.dumps({**_fields(), "occurred_at": "2026-01-01T00:00:00"}, default=str)
    with pytest.raises(InvalidEnvelope, match="occurred_at"):
        Envelope.from_bytes(raw.encode())


def test_occurred_at_is_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    envelope = Envelope(**_fields(occurred_at=datetime(2026, 1, 1, 2, 0, tzinfo=plus_two)))
    assert envelope.occurred_at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert envelope.occurred_at.tzinfo is UTC
    assert b'"occurred_at":"2026-01-01T00:00:00Z"' in envelope.to_bytes()


@pytest.mark.parametrize(
    ("field", "value"),
    [("version", 0), ("sequence", 0), ("sequence", "3"), ("type", "not a type"), ("subject", "")],
)
def test_invalid_fields_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Envelope(**_fields(**{field: value}))


def test_envelope_is_strict_and_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        Envelope(**_fields(partition=3))
    envelope = Envelope(**_fields())
    with pytest.raises(ValidationError, match="frozen"):
        envelope.sequence = 2  # type: ignore[misc]


def test_to_bytes_is_compact_utf8_json() -> None:
    envelope = Envelope(**_fields(data={"k": "é"}))
    raw = envelope.to_bytes()
    assert b": " not in raw and b", " not in raw
    assert "é".encode() in raw
    assert json.loads(raw)["event_id"] == str(envelope.event_id)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"event_id": "x"}'])
def test_from_bytes_raises_contract_error(raw: bytes) -> None:
    with pytest.raises(InvalidEnvelope) as info:
        Envelope.from_bytes(raw)
    assert isinstance(info.value, ContractError)


def test_from_bytes_errors_do_not_echo_input() -> None:
    raw = json.dumps({**_fields(), "subject": "Jane Doe jane@example.com"}, default=str)
    with pytest.raises(InvalidEnvelope) as info:
        Envelope.from_bytes(raw.encode())
    assert "Jane" not in str(info.value)


def test_wrap_fills_envelope_from_event(booked: AppointmentBooked) -> None:
    correlation, cause = uuid4(), uuid4()
    envelope = Envelope.wrap(
        booked, producer="booking", sequence=4, correlation_id=correlation, causation_id=cause
    )
    assert envelope.type == "AppointmentBooked"
    assert envelope.version == 1
    assert envelope.subject == booked.patient_id
    assert envelope.sequence == 4
    assert (envelope.correlation_id, envelope.causation_id) == (correlation, cause)
    assert isinstance(envelope.event_id, UUID)
    assert envelope.occurred_at.tzinfo is UTC
    assert envelope.data["starts_at"] == "2026-03-04T15:00:00Z"
    assert AppointmentBooked.model_validate(envelope.data) == booked


def test_wrap_uses_given_ids_and_time(booked: AppointmentBooked) -> None:
    event_id, at = uuid4(), datetime(2026, 5, 1, tzinfo=UTC)
    envelope = Envelope.wrap(
        booked,
        producer="booking",
        subject=booked.patient_id,
        sequence=1,
        correlation_id=event_id,
        event_id=event_id,
        occurred_at=at,
    )
    assert (envelope.event_id, envelope.occurred_at) == (event_id, at)


def test_wrap_rejects_subject_that_is_not_the_patient(booked: AppointmentBooked) -> None:
    with pytest.raises(SubjectMismatch):
        Envelope.wrap(
            booked, producer="booking", subject="pat-other", sequence=1, correlation_id=uuid4()
        )


def test_kafka_headers_and_key(booked: AppointmentBooked) -> None:
    envelope = Envelope.wrap(booked, producer="booking", sequence=1, correlation_id=uuid4())
    headers = kafka_headers(envelope)
    assert headers == [
        (HEADER_TYPE, b"AppointmentBooked"),
        (HEADER_VERSION, b"1"),
        (HEADER_EVENT_ID, str(envelope.event_id).encode()),
        (HEADER_CORRELATION_ID, str(envelope.correlation_id).encode()),
    ]
    assert (HEADER_TYPE, HEADER_VERSION, HEADER_EVENT_ID, HEADER_CORRELATION_ID) == (
        "ce-type",
        "ce-version",
        "ce-id",
        "correlation-id",
    )
    assert all(isinstance(v, bytes) for _, v in headers)
    assert kafka_key(envelope) == booked.patient_id.encode()


def test_type_from_headers() -> None:
    assert type_from_headers([("ce-type", b"X"), ("ce-version", b"2")]) == ("X", 2)
    assert type_from_headers({"ce-type": "X", "ce-version": "2", "other": "y"}) == ("X", 2)
    assert type_from_headers([("ce-type", b"X")]) is None
    assert type_from_headers({"ce-type": "X", "ce-version": "two"}) is None
