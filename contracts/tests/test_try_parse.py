"""`try_parse`: a subscriber's parse that reports instead of raising."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from carebridge_contracts import (
    AppointmentBooked,
    BaseEvent,
    Envelope,
    ParseStatus,
    entries,
    try_parse,
)


def _envelope(event: BaseEvent, **changes: Any) -> dict[str, Any]:
    wrapped = Envelope.wrap(event, producer="test", sequence=7, correlation_id=uuid4())
    return {**json.loads(wrapped.to_bytes()), **changes}


def _bytes(document: object) -> bytes:
    return json.dumps(document).encode()


def test_every_registered_event_parses_to_its_typed_model(example_event: BaseEvent) -> None:
    wrapped = Envelope.wrap(example_event, producer="test", sequence=3, correlation_id=uuid4())
    for form in (wrapped.to_bytes(), wrapped.to_bytes().decode(), bytearray(wrapped.to_bytes())):
        result = try_parse(form)
        assert result.status is ParseStatus.PARSED and result.is_parsed
        assert result.event == example_event
        assert result.envelope == wrapped
        assert result.reason is None
        assert result.known_versions == (1,)
        assert result.is_strictly_parsed and result.ignored_fields == ()
    assert try_parse(memoryview(wrapped.to_bytes())).event == example_event
    assert try_parse(wrapped).event == example_event


def test_a_newer_version_of_a_known_type_keeps_its_envelope(booked: AppointmentBooked) -> None:
    document = _envelope(booked, version=2)
    document["data"]["room"] = "b-12"  # what a v2 might add
    result = try_parse(_bytes(document))
    assert result.status is ParseStatus.UNKNOWN_NEWER_VERSION and result.is_unknown_newer_version
    assert result.event is None
    assert result.known_versions == (1,)
    assert result.reason is not None and "unknown version 2" in result.reason
    envelope = result.envelope
    assert envelope is not None
    assert str(envelope.event_id) == document["event_id"]
    assert (envelope.type, envelope.version, envelope.sequence) == ("AppointmentBooked", 2, 7)
    assert envelope.subject == booked.patient_id
    assert envelope.data == document["data"]


@given(version=st.integers(min_value=2, max_value=2**31))
def test_any_version_above_the_registered_ones_is_newer(version: int) -> None:
    for entry in entries():
        document = {
            "event_id": str(uuid4()),
            "type": entry.event_type,
            "version": version,
            "occurred_at": "2026-01-01T00:00:00Z",
            "producer": "future",
            "correlation_id": str(uuid4()),
            "subject": "pat-1",
            "sequence": 1,
            "data": {"patient_id": "pat-1", "anything": [1, 2]},
        }
        result = try_parse(_bytes(document))
        assert result.is_unknown_newer_version, result
        assert result.envelope is not None and result.envelope.version == version


def test_fields_added_in_the_same_version_are_ignored_and_named(booked: AppointmentBooked) -> None:
    document = _envelope(booked)
    document["data"]["room"] = "b-12"
    document["data"]["floor"] = 3
    result = try_parse(_bytes(document))
    assert result.is_parsed and result.event == booked
    assert result.ignored_fields == ("floor", "room")
    assert not result.is_strictly_parsed  # carebridge's own consumers would refuse it
    assert result.envelope is not None and "room" not in result.envelope.data
    assert str(result.envelope.event_id) == document["event_id"]


def test_unknown_fields_do_not_excuse_another_error(booked: AppointmentBooked) -> None:
    document = _envelope(booked)
    document["data"]["room"] = "b-12"
    document["data"]["clinician_id"] = "has spaces"
    result = try_parse(_bytes(document))
    assert result.is_invalid and result.reason is not None and "clinician_id" in result.reason
    mismatched = _envelope(booked, subject="someone-else")
    mismatched["data"]["room"] = "b-12"
    assert try_parse(_bytes(mismatched)).is_invalid


def test_an_unknown_type_is_reported_with_its_envelope(booked: AppointmentBooked) -> None:
    result = try_parse(_bytes(_envelope(booked, type="InvoiceIssued")))
    assert result.status is ParseStatus.UNKNOWN_TYPE and result.is_unknown_type
    assert result.envelope is not None and result.envelope.type == "InvoiceIssued"
    assert result.known_versions == ()
    assert result.reason is not None and "InvoiceIssued" in result.reason


def test_an_invalid_payload_keeps_the_envelope_and_never_quotes_the_value(
    booked: AppointmentBooked,
) -> None:
    document = _envelope(booked)
    document["data"]["clinician_id"] = "Jane Doe jane@example.org"
    result = try_parse(_bytes(document))
    assert result.status is ParseStatus.INVALID and result.is_invalid
    assert result.envelope is not None and result.event is None
    assert result.reason is not None and "clinician_id" in result.reason
    assert "Jane" not in result.reason and "example.org" not in result.reason


def test_a_subject_that_is_not_the_patient_is_invalid(booked: AppointmentBooked) -> None:
    result = try_parse(_bytes(_envelope(booked, subject="someone-else")))
    assert result.is_invalid and result.envelope is not None
    assert result.reason is not None and "subject" in result.reason


def test_an_envelope_that_does_not_validate_is_invalid_without_envelope() -> None:
    for value in (b"{not json", b"[]", b'{"type": "AppointmentBooked"}', b"", None):
        result = try_parse(value)
        assert result.is_invalid and result.envelope is None and result.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(st.binary(max_size=512))
def test_random_bytes_never_raise(value: bytes) -> None:
    assert try_parse(value).status is ParseStatus.INVALID


@given(st.text(max_size=256))
def test_random_text_never_raises(value: str) -> None:
    assert try_parse(value).status is ParseStatus.INVALID


@given(json_values)
def test_random_json_never_raises(value: object) -> None:
    assert try_parse(json.dumps(value)).status is ParseStatus.INVALID


@given(st.dictionaries(st.sampled_from(["type", "version", "data", "sequence"]), json_values))
def test_a_valid_envelope_with_random_fields_replaced_never_raises(
    replaced: dict[str, Any],
) -> None:
    document = {
        "event_id": str(uuid4()),
        "type": "AppointmentBooked",
        "version": 1,
        "occurred_at": "2026-01-01T00:00:00Z",
        "producer": "booking",
        "correlation_id": str(uuid4()),
        "subject": "pat-1",
        "sequence": 1,
        "data": {"patient_id": "pat-1"},
        **replaced,
    }
    result = try_parse(_bytes(document))
    assert result.status is not ParseStatus.PARSED  # data is never a whole AppointmentBooked
    assert result.reason


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    assert try_parse(b"[" * 100_000).is_invalid
