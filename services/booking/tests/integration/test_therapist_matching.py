"""Referral's matches, consumed from Kafka, decide with whom a therapy intake may be booked."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from carebridge_contracts import CareTeamEnded, TherapistMatched

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration


def matched(patient: str, therapist: str, referral_id: uuid.UUID) -> TherapistMatched:
    return TherapistMatched(
        patient_id=patient,
        referral_id=referral_id,
        therapist_id=therapist,
        psychiatrist_id="psy-ny-1",
        modality="CBT",
        state="NY",
    )


async def wait_matches(booking: Harness, patient: str, active: int, ended: int = 0) -> None:
    for _ in range(450):
        row = await booking.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE ended_at IS NULL) AS active,"
            " count(*) FILTER (WHERE ended_at IS NOT NULL) AS ended"
            " FROM therapist_matches WHERE patient_id = $1",
            patient,
        )
        assert row is not None
        if (row["active"], row["ended"]) == (active, ended):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the referral events were not consumed")


async def intake_slots(booking: Harness, patient: str) -> list[dict[str, Any]]:
    response = await booking.client.get(
        "/v1/slots",
        params={"state": "NY", "visit_type": "therapy_intake", "patient_id": patient},
    )
    assert response.status_code == 200, response.text
    slots: list[dict[str, Any]] = response.json()["slots"]
    return slots


async def test_a_matched_patient_books_the_intake_with_the_matched_therapist_only(
    booking: Harness,
) -> None:
    chosen = await booking.put_clinician(role="therapist", prefix="thr")
    other = await booking.put_clinician(role="therapist", prefix="thr")
    patient = await booking.assessed_patient()
    # before any match, both therapists are offered
    offered = {s["clinician_id"] for s in await intake_slots(booking, patient)}
    assert {chosen, other} <= offered

    referral_id = uuid.uuid4()
    await booking.produce([matched(patient, chosen, referral_id)])
    await wait_matches(booking, patient, active=1)

    offered = {s["clinician_id"] for s in await intake_slots(booking, patient)}
    assert offered == {chosen}
    refused = await booking.book(
        patient,
        other,
        await booking.free_slot(other, visit_type="therapy_intake"),
        visit_type="therapy_intake",
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "therapist_not_matched"
    booked = await booking.book(
        patient,
        chosen,
        await booking.free_slot(chosen, visit_type="therapy_intake"),
        visit_type="therapy_intake",
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["ends_at"] > booked.json()["starts_at"]
    # another patient is not restricted by this match
    unmatched = await booking.assessed_patient()
    assert {chosen, other} <= {s["clinician_id"] for s in await intake_slots(booking, unmatched)}

    # the care team ends: no therapist is matched any more
    await booking.produce(
        [
            CareTeamEnded(
                patient_id=patient,
                care_team_id=uuid.uuid4(),
                referral_id=referral_id,
                therapist_id=chosen,
                reason_code="completed",
            )
        ]
    )
    await wait_matches(booking, patient, active=0, ended=1)
    assert await intake_slots(booking, patient) == []
    again = await booking.book(
        patient,
        chosen,
        await booking.free_slot(chosen, visit_type="therapy_intake"),
        visit_type="therapy_intake",
    )
    assert (again.status_code, again.json()["code"]) == (409, "therapist_not_matched")
