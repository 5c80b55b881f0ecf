"""Intake events through real Kafka decide who may self-book, and what they are told."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from carebridge_devstack.testing import sample_assessment

if TYPE_CHECKING:
    from conftest import Harness

pytestmark = pytest.mark.integration


async def test_consumed_assessment_unlocks_an_initial_evaluation(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = booking.new_id("p")
    before = await booking.eligibility(patient)
    assert before["assessment_completed"] is False
    assert before["can_self_book_initial_evaluation"] is False

    await booking.produce([sample_assessment(patient)])
    await booking.wait_consumed([patient])

    after = await booking.eligibility(patient)
    assert after["assessment_completed"] is True
    assert after["urgent_review_required"] is False
    assert after["can_self_book_initial_evaluation"] is True
    starts_at = await booking.free_slot(clinician)
    response = await booking.book(patient, clinician, starts_at)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "booked"
    assert body["clinician_role"] == "psychiatrist"
    assert body["state"] == "NY"


async def test_without_assessment_an_initial_evaluation_is_refused(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = booking.new_id("p")
    response = await booking.book(patient, clinician, await booking.free_slot(clinician))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "assessment_required"
    assert "assessment" in body["message"]
    listed = await booking.client.get("/v1/appointments", params={"patient_id": patient})
    assert listed.json()["appointments"] == []


async def test_imminent_risk_in_the_assessment_routes_to_urgent_review(booking: Harness) -> None:
    clinician = await booking.put_clinician()
    patient = await booking.assessed_patient(imminent=True)
    eligibility = await booking.eligibility(patient)
    assert eligibility["urgent_review_required"] is True
    assert eligibility["can_self_book_initial_evaluation"] is False

    response = await booking.book(patient, clinician, await booking.free_slot(clinician))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "urgent_review_required"
    assert "call or text 988" in body["message"]
    assert "911" in body["message"]
    assert "urgent review" in body["message"]
    assert body["crisis_line"] == "988"


async def test_safety_risk_flag_blocks_self_booking_of_any_visit(booking: Harness) -> None:
    psychiatrist = await booking.put_clinician()
    therapist = await booking.put_clinician(role="therapist", prefix="thr")
    patient = await booking.assessed_patient()
    # a non-imminent flag (PHQ-9 item 9) alone does not block self-booking
    await booking.produce([booking.risk_flag(patient, imminent=False)])
    await booking.produce([booking.risk_flag(patient, imminent=True)])
    for _ in range(300):
        if (await booking.eligibility(patient))["urgent_review_required"]:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("SafetyRiskFlagged was not consumed")

    evaluation = await booking.book(patient, psychiatrist, await booking.free_slot(psychiatrist))
    intake = await booking.book(
        patient,
        therapist,
        await booking.free_slot(therapist, visit_type="therapy_intake"),
        visit_type="therapy_intake",
    )
    assert [evaluation.status_code, intake.status_code] == [409, 409]
    assert {evaluation.json()["code"], intake.json()["code"]} == {"urgent_review_required"}
