from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from carebridge_contracts import (
    AppointmentBooked,
    AssessmentCompleted,
    BaseEvent,
    CarePlanUpdated,
    Envelope,
    SafetyRiskFlagged,
    TherapistRequested,
    entries,
    parse,
)
from carebridge_contracts._schemas import event_schema
from carebridge_contracts.events.intake import gad7_band, phq9_band

PHI_FIELD_NAMES = re.compile(r"name|email|phone|address|note|text|comment", re.IGNORECASE)


def test_examples_cover_every_registered_event(events: list[BaseEvent]) -> None:
    assert sorted(type(e).__name__ for e in events) == sorted(e.model.__name__ for e in entries())


def test_event_round_trips_through_envelope(example_event: BaseEvent) -> None:
    event = example_event
    envelope = Envelope.wrap(event, producer="test", sequence=1, correlation_id=uuid4())
    parsed_envelope, parsed = parse(Envelope.from_bytes(envelope.to_bytes()))
    assert parsed == event
    assert type(parsed) is type(event)
    assert parsed_envelope == envelope
    assert type(event).model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.event_type)
def test_no_event_field_looks_like_phi(entry: Any) -> None:
    offending = [name for name in entry.model.model_fields if PHI_FIELD_NAMES.search(name)]
    assert offending == []


def _string_schemas(node: Any, defs: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, list):
        return [s for item in node for s in _string_schemas(item, defs, path)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        return _string_schemas(defs[node["$ref"].split("/")[-1]], defs, path)
    found = [(path, node)] if node.get("type") == "string" else []
    for key, value in node.items():
        if key == "properties":
            for name, sub in value.items():
                found += _string_schemas(sub, defs, f"{path}.{name}")
        elif key in ("items", "anyOf"):
            found += _string_schemas(value, defs, path)
    return found


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e.event_type)
def test_no_event_string_can_carry_free_text(entry: Any) -> None:
    """Every string is an enum, a constant, a format (uuid, date-time) or a short pattern."""
    schema = event_schema(entry)
    for path, node in _string_schemas(schema, schema.get("$defs", {})):
        assert {"enum", "const", "format", "pattern"} & node.keys(), path
        assert "pattern" not in node or r"\s" not in node["pattern"], path


def test_events_are_frozen_and_forbid_extra(booked: AppointmentBooked) -> None:
    with pytest.raises(ValidationError):
        booked.state = "CA"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        AppointmentBooked.model_validate({**booked.model_dump(), "patient_name": "x"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patient_id", "Jane Doe"),
        ("patient_id", "jane@example.com"),
        ("clinician_id", ""),
        ("state", "ny"),
        ("state", "XX"),
        ("starts_at", datetime(2026, 3, 4, 15, 0)),
        ("ends_at", datetime(2026, 3, 4, 15, 0, tzinfo=UTC)),
        ("status", "proposed"),
        ("visit_type", "surgery"),
    ],
)
def test_appointment_booked_rejects(booked: AppointmentBooked, field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        AppointmentBooked.model_validate({**booked.model_dump(), field: value})


def test_status_defaults_to_booked(booked: AppointmentBooked) -> None:
    assert booked.status == "booked"


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (10, "moderate"),
        (15, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_bands(total: int, band: str) -> None:
    assert phq9_band(total) == band


@pytest.mark.parametrize(
    ("total", "band"),
    [(4, "minimal"), (9, "mild"), (14, "moderate"), (15, "severe"), (21, "severe")],
)
def test_gad7_bands(total: int, band: str) -> None:
    assert gad7_band(total) == band


@pytest.mark.parametrize("bad", [-1, 28])
def test_band_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError):
        phq9_band(bad)


def _assessment(events: list[BaseEvent], **changes: object) -> dict[str, Any]:
    base = next(e for e in events if isinstance(e, AssessmentCompleted))
    return {**base.model_dump(), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"phq9_total": 28, "phq9_band": "severe"},
        {"phq9_total": 12, "phq9_band": "mild"},
        {"gad7_total": 15, "gad7_band": "moderate"},
        {"gad7_total": 22, "gad7_band": "severe"},
        {"phq9_total": "12"},
        {"item9_positive": "yes"},
        {"preferred_channel": "pigeon"},
    ],
)
def test_assessment_completed_rejects(events: list[BaseEvent], changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AssessmentCompleted.model_validate(_assessment(events, **changes))


def test_safety_flag_item9_alone_need_not_be_imminent(events: list[BaseEvent]) -> None:
    flag = next(e for e in events if isinstance(e, SafetyRiskFlagged))
    data = {**flag.model_dump(), "reasons": ["phq9_item9"], "imminent": False}
    assert not SafetyRiskFlagged.model_validate(data).imminent


@pytest.mark.parametrize(
    "changes",
    [
        {"reasons": []},
        {"reasons": ["cssrs_q5"], "imminent": False},
        {"reasons": ["phq9_item9", "phq9_item9"]},
        {"reasons": ["felt_sad"]},
    ],
)
def test_safety_flag_rejects(events: list[BaseEvent], changes: dict[str, object]) -> None:
    flag = next(e for e in events if isinstance(e, SafetyRiskFlagged))
    with pytest.raises(ValidationError):
        SafetyRiskFlagged.model_validate({**flag.model_dump(), **changes})


def test_therapist_requested_by_psychiatrist_names_them(events: list[BaseEvent]) -> None:
    request = next(e for e in events if isinstance(e, TherapistRequested))
    data = request.model_dump()
    TherapistRequested.model_validate(
        {**data, "requested_by": "intake", "requesting_clinician_id": None}
    )
    with pytest.raises(ValidationError, match="requesting_clinician_id"):
        TherapistRequested.model_validate({**data, "requesting_clinician_id": None})


@pytest.mark.parametrize(
    "changes",
    [{"changed_sections": []}, {"changed_sections": ["goals", "goals"]}, {"plan_version": 0}],
)
def test_care_plan_update_rejects(events: list[BaseEvent], changes: dict[str, object]) -> None:
    update = next(e for e in events if isinstance(e, CarePlanUpdated))
    with pytest.raises(ValidationError):
        CarePlanUpdated.model_validate({**update.model_dump(), **changes})


def test_datetimes_are_normalised_to_utc(booked: AppointmentBooked) -> None:
    eastern = timezone(timedelta(hours=-5))
    moved = AppointmentBooked.model_validate(
        {
            **booked.model_dump(),
            "starts_at": datetime(2026, 3, 4, 10, 0, tzinfo=eastern),
            "ends_at": datetime(2026, 3, 4, 11, 0, tzinfo=eastern),
        }
    )
    assert moved.starts_at == booked.starts_at
    assert moved.model_dump(mode="json")["starts_at"] == "2026-03-04T15:00:00Z"
