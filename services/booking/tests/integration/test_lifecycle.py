"""Appointment lifecycle over HTTP, its events on the appointments topic, and refusals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from carebridge_contracts import Envelope, Topic, parse
from carebridge_devstack.testing import read_topic

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration


async def _post(booking: Harness, path: str, body: dict[str, Any] | None = None) -> Any:
    response = await booking.client.post(path, json=body)
    return response


async def test_lifecycle_events_reach_the_topic_in_order(booking: Harness) -> None:
    psychiatrist = await booking.put_clinician()
    patient = await booking.assessed_patient()

    # book, move, cancel an initial evaluation
    first = await booking.free_slot(psychiatrist)
    a = (await booking.book(patient, psychiatrist, first)).json()
    later = await booking.free_slot(psychiatrist, after=timedelta(hours=6))
    moved = await _post(
        booking,
        f"/v1/appointments/{a['id']}/reschedule",
        {"starts_at": later.isoformat(), "state": "NY"},
    )
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["ends_at"]) == later + timedelta(minutes=60)
    cancelled = await _post(
        booking,
        f"/v1/appointments/{a['id']}/cancel",
        {"cancelled_by": "patient", "reason_code": "patient_request"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    # book another; it takes place
    b_response = await booking.book(patient, psychiatrist, await booking.free_slot(psychiatrist))
    assert b_response.status_code == 201, b_response.text
    b = b_response.json()
    early = await _post(booking, f"/v1/appointments/{b['id']}/complete")
    assert early.status_code == 409
    assert early.json()["code"] == "visit_not_started"
    booking.clock.advance(timedelta(days=3, hours=1))
    completed = await _post(booking, f"/v1/appointments/{b['id']}/complete")
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "fulfilled"

    # a follow-up is now allowed; the patient does not come
    c_start = await booking.free_slot(psychiatrist, visit_type="psychiatric_follow_up")
    c_response = await booking.book(
        patient, psychiatrist, c_start, visit_type="psychiatric_follow_up"
    )
    assert c_response.status_code == 201, c_response.text
    c = c_response.json()
    assert datetime.fromisoformat(c["ends_at"]) - c_start == timedelta(minutes=30)
    booking.clock.advance(timedelta(days=4))
    no_show = await _post(booking, f"/v1/appointments/{c['id']}/no-show")
    assert no_show.status_code == 200, no_show.text
    assert no_show.json()["status"] == "noshow"

    records = await read_topic(
        booking.kafka,
        str(Topic.APPOINTMENTS),
        where=lambda r: r.key == patient.encode(),
        expect=7,
        settle=2.0,
        timeout=60,
    )
    parsed = [parse(Envelope.from_bytes(r.value)) for r in records]
    assert [(env.type, str(ev.appointment_id)) for env, ev in parsed] == [
        ("AppointmentBooked", a["id"]),
        ("AppointmentRescheduled", a["id"]),
        ("AppointmentCancelled", a["id"]),
        ("AppointmentBooked", b["id"]),
        ("AppointmentCompleted", b["id"]),
        ("AppointmentBooked", c["id"]),
        ("AppointmentNoShow", c["id"]),
    ]
    assert [env.sequence for env, _ in parsed] == list(range(1, 8))
    assert {env.producer for env, _ in parsed} == {"booking"}
    rescheduled = parsed[1][1].model_dump()
    assert rescheduled["previous_starts_at"] == first
    assert rescheduled["starts_at"] == later
    assert rescheduled["state"] == "NY"
    cancel_event = parsed[2][1].model_dump()
    assert (cancel_event["cancelled_by"], cancel_event["reason_code"]) == (
        "patient",
        "patient_request",
    )

    listed = await booking.client.get("/v1/appointments", params={"patient_id": patient})
    assert {x["id"]: x["status"] for x in listed.json()["appointments"]} == {
        a["id"]: "cancelled",
        b["id"]: "fulfilled",
        c["id"]: "noshow",
    }


async def test_illegal_transitions_answer_409_with_the_current_status(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = await booking.assessed_patient()
    appointment = (
        await booking.book(patient, clinician, await booking.free_slot(clinician))
    ).json()
    path = f"/v1/appointments/{appointment['id']}"
    cancel = {"cancelled_by": "clinician", "reason_code": "clinician_unavailable"}
    assert (await _post(booking, f"{path}/cancel", cancel)).status_code == 200
    for action, body in (
        ("cancel", cancel),
        ("complete", None),
        ("no-show", None),
        ("reschedule", {"starts_at": appointment["starts_at"], "state": "NY"}),
    ):
        response = await _post(booking, f"{path}/{action}", body)
        assert response.status_code == 409, (action, response.text)
        assert response.json()["code"] == "illegal_transition"
        assert response.json()["current_status"] == "cancelled"


async def test_follow_up_needs_a_fulfilled_initial_evaluation(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = await booking.assessed_patient()
    response = await booking.book(
        patient,
        clinician,
        await booking.free_slot(clinician, visit_type="psychiatric_follow_up"),
        visit_type="psychiatric_follow_up",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "initial_evaluation_required"


async def test_refusals_of_role_hours_grid_past_and_double_booking(booking: Harness) -> None:
    office_hours = {"mon": [{"start": "09:00", "end": "17:00"}]}
    psychiatrist = await booking.put_clinician()
    other = await booking.put_clinician()
    therapist = await booking.put_clinician(role="therapist", prefix="thr")
    part_time = await booking.put_clinician(working_hours=office_hours)
    patient = await booking.assessed_patient()
    slot = await booking.free_slot(psychiatrist)

    async def code(clinician: str, starts_at: datetime, **kw: Any) -> tuple[int, str]:
        response = await booking.book(patient, clinician, starts_at, **kw)
        return response.status_code, response.json().get("code", "")

    assert await code(therapist, slot) == (409, "clinician_role_mismatch")
    assert await code(psychiatrist, slot + timedelta(minutes=10)) == (409, "not_on_slot_grid")
    assert await code(psychiatrist, slot - timedelta(days=2)) == (409, "slot_in_past")
    assert await code(psychiatrist, slot + timedelta(days=90)) == (409, "beyond_booking_horizon")
    tuesday = slot + timedelta(days=(1 - slot.weekday()) % 7)
    assert await code(part_time, tuesday) == (409, "outside_working_hours")
    assert await code("psy-nobody", slot) == (404, "clinician_not_found")

    assert await code(psychiatrist, slot) == (201, "")
    # the same patient at an overlapping time with another clinician
    overlapping = slot + timedelta(minutes=30)
    assert await code(therapist, overlapping, visit_type="therapy_intake") == (
        409,
        "patient_double_booked",
    )
    # one pending initial evaluation per patient
    # (a free slot of the other clinician well clear of the first visit, within working hours)
    clear = await booking.free_slot(other, after=slot - booking.clock.now() + timedelta(hours=2))
    assert await code(other, clear) == (
        409,
        "initial_evaluation_already_booked",
    )


async def test_validation_errors_are_422_without_echoing_input(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    naive = await booking.client.post(
        "/v1/appointments",
        json={
            "patient_id": "p-1",
            "clinician_id": clinician,
            "visit_type": "initial_psychiatric_evaluation",
            "starts_at": "2030-01-01T10:00:00",
            "state": "NY",
            "note": "Jane Doe feels low",
        },
    )
    assert naive.status_code == 422
    assert "Jane" not in naive.text
    fields = {e["field"] for e in naive.json()["errors"]}
    assert {"starts_at", "note"} <= fields

    now = booking.clock.now()
    too_wide = await booking.client.get(
        "/v1/slots",
        params={
            "state": "NY",
            "visit_type": "therapy_session",
            "from": now.isoformat(),
            "to": (now + timedelta(days=15)).isoformat(),
        },
    )
    assert too_wide.status_code == 422
    assert too_wide.json()["errors"][0]["field"] == "query.to"
    assert "14 days" in too_wide.json()["errors"][0]["reason"]
    bad_state = await booking.client.get(
        "/v1/slots", params={"state": "ZZ", "visit_type": "therapy_session"}
    )
    assert bad_state.status_code == 422

    bad_zone = await booking.client.put(
        f"/v1/clinicians/{booking.new_id('psy')}",
        json={"role": "psychiatrist", "time_zone": "Mars/Olympus"},
    )
    assert bad_zone.status_code == 422
    overlapping = await booking.client.put(
        f"/v1/clinicians/{booking.new_id('psy')}",
        json={
            "role": "psychiatrist",
            "time_zone": "UTC",
            "working_hours": {
                "mon": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]
            },
        },
    )
    assert overlapping.status_code == 422


async def test_put_creates_then_replaces_a_clinician(booking: Harness) -> None:
    clinician_id = booking.new_id("thr")
    body = {
        "role": "therapist",
        "time_zone": "America/Chicago",
        "licences": [{"state": "IL", "expires_on": "2030-12-31"}],
        "working_hours": {"tue": [{"start": "08:00", "end": "12:00"}]},
        "modalities": ["CBT", "EMDR"],
        "capacity": 12,
    }
    created = await booking.client.put(f"/v1/clinicians/{clinician_id}", json=body)
    assert created.status_code == 201, created.text
    replaced = await booking.client.put(
        f"/v1/clinicians/{clinician_id}", json={**body, "capacity": 10}
    )
    assert replaced.status_code == 200
    fetched = (await booking.client.get(f"/v1/clinicians/{clinician_id}")).json()
    assert fetched == {
        **body,
        "id": clinician_id,
        "capacity": 10,
        "active": True,
    }
    missing = await booking.client.get("/v1/clinicians/nobody-here")
    assert missing.status_code == 404
    assert missing.json()["code"] == "clinician_not_found"
