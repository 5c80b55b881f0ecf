"""Licensure is checked at every booking and reschedule, and decides whose slots are offered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from carebridge_booking.seed import seed_clinicians
from carebridge_booking.settings import DEFAULT_SEED_FILE

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration


async def test_booking_with_a_clinician_not_licensed_in_the_patients_state(
    booking: Harness,
) -> None:
    ny_only = await booking.put_clinician(licences=[{"state": "NY"}])
    patient = await booking.assessed_patient(state="NJ")
    starts_at = await booking.free_slot(ny_only)
    response = await booking.book(patient, ny_only, starts_at, state="NJ")
    assert response.status_code == 409
    assert response.json()["code"] == "clinician_not_licensed_in_state"


async def test_an_expired_licence_does_not_count(booking: Harness) -> None:
    yesterday = (booking.clock.now() - timedelta(days=1)).date().isoformat()
    lapsed = await booking.put_clinician(
        licences=[{"state": "NY"}, {"state": "NJ", "expires_on": yesterday}]
    )
    patient = await booking.assessed_patient()
    starts_at = await booking.free_slot(lapsed)
    response = await booking.book(patient, lapsed, starts_at, state="NJ")
    assert response.status_code == 409
    assert response.json()["code"] == "clinician_not_licensed_in_state"
    assert (await booking.book(patient, lapsed, starts_at, state="NY")).status_code == 201


async def test_licence_is_rechecked_at_reschedule(booking: Harness) -> None:
    clinician = await booking.put_clinician(licences=[{"state": "NY"}, {"state": "NJ"}])
    patient = await booking.assessed_patient()
    first = await booking.free_slot(clinician)
    second = await booking.free_slot(clinician, index=4)
    booked = await booking.book(patient, clinician, first)
    assert booked.status_code == 201, booked.text
    appointment_id = booked.json()["id"]

    # moving to NJ is fine while the clinician holds an NJ licence...
    moved = await booking.client.post(
        f"/v1/appointments/{appointment_id}/reschedule",
        json={"starts_at": second.isoformat(), "state": "NJ"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "NJ"

    # ...but not to CA, and not to NJ once that licence is gone
    to_ca = await booking.client.post(
        f"/v1/appointments/{appointment_id}/reschedule",
        json={"starts_at": first.isoformat(), "state": "CA"},
    )
    assert to_ca.status_code == 409
    assert to_ca.json()["code"] == "clinician_not_licensed_in_state"
    patched = await booking.client.patch(
        f"/v1/clinicians/{clinician}", json={"licences": [{"state": "NY"}]}
    )
    assert patched.status_code == 200, patched.text
    back = await booking.client.post(
        f"/v1/appointments/{appointment_id}/reschedule",
        json={"starts_at": first.isoformat(), "state": "NJ"},
    )
    assert back.status_code == 409
    assert back.json()["code"] == "clinician_not_licensed_in_state"

    current = (await booking.client.get(f"/v1/appointments/{appointment_id}")).json()
    assert datetime.fromisoformat(current["starts_at"]) == second
    assert current["state"] == "NJ"


async def test_slots_come_only_from_clinicians_licensed_in_the_state(booking: Harness) -> None:
    yesterday = (booking.clock.now() - timedelta(days=1)).date().isoformat()
    ny = await booking.put_clinician(licences=[{"state": "NY"}])
    ny_nj = await booking.put_clinician(licences=[{"state": "NJ"}, {"state": "NY"}])
    await booking.put_clinician(licences=[{"state": "CA"}])
    await booking.put_clinician(licences=[{"state": "NY", "expires_on": yesterday}])
    await booking.put_clinician(role="therapist", prefix="thr", licences=[{"state": "NY"}])
    inactive = await booking.put_clinician(licences=[{"state": "NY"}])
    await booking.client.patch(f"/v1/clinicians/{inactive}", json={"active": False})

    start = booking.clock.now() + timedelta(hours=1)
    response = await booking.client.get(
        "/v1/slots",
        params={
            "state": "NY",
            "visit_type": "initial_psychiatric_evaluation",
            "from": start.isoformat(),
            "to": (start + timedelta(days=2)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    slots = response.json()["slots"]
    assert {s["clinician_id"] for s in slots} == {ny, ny_nj}
    assert all(s["state"] == "NY" for s in slots)
    starts = [s["starts_at"] for s in slots]
    assert starts == sorted(starts)

    nj = await booking.client.get(
        "/v1/slots",
        params={"state": "NJ", "visit_type": "psychiatric_follow_up"},
    )
    assert {s["clinician_id"] for s in nj.json()["slots"]} == {ny_nj}


async def test_a_booked_slot_is_no_longer_offered(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = await booking.assessed_patient()
    starts_at = await booking.free_slot(clinician)
    assert (await booking.book(patient, clinician, starts_at)).status_code == 201
    # the 60-minute visit also hides the 30-minute-grid slots that would overlap it
    follow_up_slots = await booking.client.get(
        "/v1/slots",
        params={
            "state": "NY",
            "visit_type": "initial_psychiatric_evaluation",
            "clinician_id": clinician,
            "from": (starts_at - timedelta(hours=2)).isoformat(),
            "to": (starts_at + timedelta(hours=2)).isoformat(),
        },
    )
    offered = {datetime.fromisoformat(s["starts_at"]) for s in follow_up_slots.json()["slots"]}
    assert offered, "the neighbourhood of the booking has other free slots"
    for minutes in (-30, 0, 30):
        assert starts_at + timedelta(minutes=minutes) not in offered


@pytest.mark.parametrize("seed_file", [str(DEFAULT_SEED_FILE)])
async def test_packaged_seed_gives_a_usable_directory(booking: Harness) -> None:
    async def ids(**params: str) -> set[str]:
        response = await booking.client.get("/v1/clinicians", params=params)
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["clinicians"]}

    assert await ids(state="NY", role="psychiatrist") == {"psy-ny-1", "psy-ny-2"}
    assert await ids(state="NJ", role="psychiatrist") == {"psy-ny-1"}
    assert await ids(state="CA", role="psychiatrist") == {"psy-ca-1"}
    assert await ids(state="NY", role="therapist") == {"thr-ny-1", "thr-ny-2"}
    assert await ids(state="CA", role="therapist") == {"thr-ca-1"}

    # psy-ny-2 also works weekends: a New York patient finds a slot within a day, any day
    response = await booking.client.get(
        "/v1/slots",
        params={
            "state": "NY",
            "visit_type": "initial_psychiatric_evaluation",
            "to": (booking.clock.now() + timedelta(hours=36)).isoformat(),
        },
    )
    slots = response.json()["slots"]
    assert slots
    assert {s["clinician_id"] for s in slots} <= {"psy-ny-1", "psy-ny-2"}

    # seeding again (a restart, a second replica) changes nothing
    before = (await booking.client.get("/v1/clinicians")).json()
    await seed_clinicians(booking.context)
    assert (await booking.client.get("/v1/clinicians")).json() == before
