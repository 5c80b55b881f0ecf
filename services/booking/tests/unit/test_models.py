"""API models: clinician validation, the domain round trip, and the packaged seed file."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from pydantic import ValidationError

from carebridge_booking.domain import TimeWindow
from carebridge_booking.models import ClinicianBody, ClinicianOut
from carebridge_booking.seed import load_seed
from carebridge_booking.settings import DEFAULT_SEED_FILE
from carebridge_booking.store import _hours_from_json, _hours_to_json

VALID: dict[str, Any] = {
    "role": "therapist",
    "time_zone": "America/New_York",
    "licences": [{"state": "NY"}, {"state": "NJ", "expires_on": "2030-01-31"}],
    "working_hours": {
        "mon": [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "17:00"}],
        "sat": [{"start": "10:00", "end": "14:00"}],
    },
    "modalities": ["CBT", "DBT"],
    "capacity": 20,
}


def test_round_trip_through_the_domain() -> None:
    body = ClinicianBody.model_validate(VALID)
    clinician = body.to_domain("thr-1")
    assert clinician.working_hours[0] == (
        TimeWindow(time(9), time(12)),
        TimeWindow(time(13), time(17)),
    )
    assert clinician.working_hours[5] == (TimeWindow(time(10), time(14)),)
    assert clinician.licences[1].expires_on == date(2030, 1, 31)
    out = ClinicianOut.of(clinician).model_dump(mode="json")
    assert out == {
        **VALID,
        "id": "thr-1",
        "active": True,
        "licences": [
            {"state": "NY", "expires_on": None},
            {"state": "NJ", "expires_on": "2030-01-31"},
        ],
    }


def test_working_hours_json_round_trip() -> None:
    hours = ClinicianBody.model_validate(VALID).to_domain("x").working_hours
    assert _hours_from_json(_hours_to_json(hours)) == hours


@pytest.mark.parametrize(
    "change",
    [
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "EST5EDT "},
        {"role": "nurse"},
        {"licences": [{"state": "NY"}, {"state": "NY"}]},
        {"licences": [{"state": "XX"}]},
        {"working_hours": {"mon": [{"start": "17:00", "end": "09:00"}]}},
        {
            "working_hours": {
                "mon": [{"start": "09:00", "end": "12:00"}, {"start": "11:30", "end": "13:00"}]
            }
        },
        {"working_hours": {"funday": [{"start": "09:00", "end": "12:00"}]}},
        {"working_hours": {"mon": [{"start": "09:00+02:00", "end": "12:00"}]}},
        {"modalities": ["CBT", "CBT"]},
        {"modalities": ["astrology"]},
        {"capacity": -1},
        {"name": "Dr. Jane Doe"},
    ],
)
def test_invalid_clinicians_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ClinicianBody.model_validate({**VALID, **change})


def test_packaged_seed_covers_the_demo_directory() -> None:
    seed = load_seed(DEFAULT_SEED_FILE)
    by_id = {c.id: c for c in seed.clinicians}

    def licensed(role: str, state: str) -> set[str]:
        return {
            c.id
            for c in seed.clinicians
            if c.role == role and state in {lic.state for lic in c.licences}
        }

    assert len(licensed("psychiatrist", "NY")) >= 2
    assert licensed("psychiatrist", "NY") & licensed("psychiatrist", "NJ")
    assert licensed("psychiatrist", "CA")
    ny_therapists = licensed("therapist", "NY")
    assert len(ny_therapists) >= 2
    assert {"CBT", "DBT"} <= {m for t in ny_therapists for m in by_id[t].modalities}
    assert licensed("therapist", "CA")
    weekend = [
        c.id
        for c in seed.clinicians
        if c.role == "psychiatrist"
        and "NY" in {lic.state for lic in c.licences}
        and {"sat", "sun"} <= set(c.working_hours)
    ]
    assert weekend
