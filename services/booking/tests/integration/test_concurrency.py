"""No double booking under load: PostgreSQL's exclusion constraint decides, not the API."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.testing import read_topic, sample_assessment

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration

RACERS = 50


async def test_fifty_concurrent_bookings_of_one_slot_give_exactly_one(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patients = [booking.new_id("p") for _ in range(RACERS)]
    await booking.produce(sample_assessment(p) for p in patients)
    await booking.wait_consumed(patients)
    starts_at = await booking.free_slot(clinician)

    responses = await asyncio.gather(*(booking.book(p, clinician, starts_at) for p in patients))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), [
        r.text for r in responses if r.status_code >= 500
    ]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
    winner = next(r.json() for r in responses if r.status_code == 201)

    rows = await booking.pool.fetch(
        "SELECT id, patient_id FROM appointments"
        " WHERE clinician_id = $1 AND status = 'booked'"
        " AND tstzrange(starts_at, ends_at, '[)') && tstzrange($2::timestamptz, $2::timestamptz + interval '1 hour', '[)')",
        clinician,
        starts_at,
    )
    assert [(str(r["id"]), r["patient_id"]) for r in rows] == [(winner["id"], winner["patient_id"])]
    assert await booking.pool.fetchval("SELECT count(*) FROM appointments") == 1

    # and exactly one AppointmentBooked left through the outbox
    keys = {p.encode() for p in patients}
    records = await read_topic(
        booking.kafka,
        str(Topic.APPOINTMENTS),
        where=lambda r: r.key in keys,
        expect=1,
        settle=3.0,
        timeout=60,
    )
    assert len(records) == 1
    envelope = Envelope.from_bytes(records[0].value)
    assert envelope.type == "AppointmentBooked"
    assert envelope.data["appointment_id"] == winner["id"]
