"""Referrals through real Kafka and PostgreSQL: opened, matched, held for consent, from intake."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from carebridge_contracts import (
    AppointmentCancelled,
    AppointmentCompleted,
    AssessmentCompleted,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ReferralWaitlisted,
    TherapistMatched,
    TherapistRequested,
    Topic,
)
from carebridge_devstack.testing import sample_assessment
from carebridge_referral.settings import DEFAULT_SEED_FILE

if TYPE_CHECKING:
    from conftest import Referral

pytestmark = pytest.mark.integration


async def test_psychiatrist_referral_is_matched_and_forms_a_care_team(referral: Referral) -> None:
    therapist = await referral.put_therapist(capacity=2)
    patient = await referral.consented_patient()

    opened = await referral.referred(patient, psychiatrist="psy-wy-7")
    assert opened["status"] == "active"
    assert opened["therapist_id"] == therapist
    assert opened["hold_reason"] is None
    assert opened["requested_by"] == "psychiatrist"

    events = await referral.events(Topic.REFERRALS, patient, expect=3)
    assert [e.type for e, _ in events] == [
        "TherapistRequested",
        "TherapistMatched",
        "CareTeamFormed",
    ]
    assert [e.sequence for e, _ in events] == [1, 2, 3]
    assert len({e.correlation_id for e, _ in events}) == 1
    (_, requested), (_, matched), (_, formed) = events
    assert isinstance(requested, TherapistRequested)
    assert requested.requested_by == "psychiatrist"
    assert requested.requesting_clinician_id == "psy-wy-7"
    assert str(requested.referral_id) == opened["id"]
    assert isinstance(matched, TherapistMatched)
    assert (matched.therapist_id, matched.psychiatrist_id) == (therapist, "psy-wy-7")
    assert (matched.state, matched.modality) == ("WY", "CBT")
    assert isinstance(formed, CareTeamFormed)
    assert (formed.psychiatrist_id, formed.therapist_id) == ("psy-wy-7", therapist)
    assert str(formed.care_team_id) == opened["care_team_id"]

    team = (await referral.client.get(f"/v1/patients/{patient}/care-team")).json()
    assert team["therapist_id"] == therapist
    assert team["psychiatrist_id"] == "psy-wy-7"
    assert team["status"] == "active"
    load = (await referral.client.get(f"/v1/therapists/{therapist}")).json()
    assert (load["active_patients"], load["free_places"]) == (1, 1)

    # the same request again is answered with the same referral; a different one is refused
    again = await referral.refer(patient, psychiatrist="psy-wy-7")
    assert again.status_code == 200
    assert again.json()["id"] == opened["id"]
    other = await referral.refer(patient, psychiatrist="psy-wy-7", modality="DBT")
    assert other.status_code == 409
    assert other.json()["code"] == "referral_already_open"
    assert other.json()["referral_id"] == opened["id"]
    assert len(await referral.referrals_of(patient)) == 1


async def test_without_consent_a_referral_waits_and_is_matched_when_consent_is_granted(
    referral: Referral,
) -> None:
    therapist = await referral.put_therapist()
    patient = referral.new_id("p")

    opened = await referral.referred(patient)
    assert (opened["status"], opened["hold_reason"]) == ("on-hold", "awaiting_consent")
    assert opened["therapist_id"] is None
    events = await referral.events(Topic.REFERRALS, patient, expect=2)
    waitlisted = events[1][1]
    assert isinstance(waitlisted, ReferralWaitlisted)
    assert waitlisted.reason_code == "awaiting_consent"

    consent = await referral.grant(patient)
    assert consent["status"] == "granted"
    after = await referral.referral(opened["id"])
    assert (after["status"], after["therapist_id"]) == ("active", therapist)
    types = await referral.event_types(Topic.REFERRALS, patient, expect=4)
    assert types == [
        "TherapistRequested",
        "ReferralWaitlisted",
        "TherapistMatched",
        "CareTeamFormed",
    ]
    consents = await referral.events(Topic.CONSENTS, patient, expect=1)
    granted = consents[0][1]
    assert isinstance(granted, ConsentGranted)
    assert str(granted.consent_id) == consent["consent_id"]

    # granting again changes nothing and emits nothing
    again = await referral.client.post(
        f"/v1/patients/{patient}/consents", json={"scope": "care_plan_sharing"}
    )
    assert again.status_code == 200
    assert again.json()["consent_id"] == consent["consent_id"]
    assert len(await referral.events(Topic.CONSENTS, patient)) == 1


def assessment(patient: str, *, severe: bool, interest: bool = True) -> AssessmentCompleted:
    base = sample_assessment(patient, state="WY").model_dump()
    if severe:
        base.update(phq9_total=21, phq9_band="severe")
    base.update(therapy_interest=interest, assessment_id=uuid.uuid4())
    return AssessmentCompleted.model_validate(base)


async def test_an_assessment_with_therapy_interest_opens_one_referral(referral: Referral) -> None:
    therapist = await referral.put_therapist()
    patient = referral.new_id("p")
    uninterested = referral.new_id("p")
    visit_start = datetime.now(UTC) - timedelta(hours=2)
    # booking tells referral who the patient's psychiatrist is
    await referral.publish(
        AppointmentCompleted(
            patient_id=patient,
            appointment_id=uuid.uuid4(),
            clinician_id="psy-wy-3",
            visit_type="initial_psychiatric_evaluation",
            starts_at=visit_start,
            ends_at=visit_start + timedelta(hours=1),
        )
    )
    first = assessment(patient, severe=True)
    envelope = await referral.publish(first)
    await referral.publish(assessment(uninterested, severe=True, interest=False))

    async def opened() -> list[dict[str, Any]]:
        return await referral.referrals_of(patient)

    found = await referral.eventually(opened, what="the intake referral")
    assert len(found) == 1
    opened_referral = found[0]
    assert opened_referral["requested_by"] == "intake"
    assert opened_referral["urgency"] == "urgent"  # PHQ-9 severe
    assert opened_referral["modality"] == "CBT"  # the default_modality setting
    assert opened_referral["state"] == "WY"
    assert opened_referral["assessment_id"] == str(first.assessment_id)
    assert opened_referral["hold_reason"] == "awaiting_consent"

    # a redelivered event and a second assessment open nothing more
    await referral.republish(envelope)
    await referral.publish(assessment(patient, severe=False), sequence=2)
    await referral.grant(patient)
    events = await referral.events(Topic.REFERRALS, patient, expect=4, settle=3.0)
    assert [e.type for e, _ in events] == [
        "TherapistRequested",
        "ReferralWaitlisted",
        "TherapistMatched",
        "CareTeamFormed",
    ]
    requested, formed = events[0][1], events[3][1]
    assert isinstance(requested, TherapistRequested)
    assert (requested.requested_by, requested.urgency) == ("intake", "urgent")
    assert requested.requesting_clinician_id is None
    assert isinstance(formed, CareTeamFormed)
    # the care team's psychiatrist is the one of the patient's completed psychiatric visit
    assert (formed.psychiatrist_id, formed.therapist_id) == ("psy-wy-3", therapist)
    assert len(await referral.referrals_of(patient)) == 1
    assert await referral.referrals_of(uninterested) == []


async def test_the_care_team_follows_the_patients_current_psychiatrist(
    referral: Referral,
) -> None:
    """Visits, not referrals, say who the patient's psychiatrist is: the one of the most recent
    psychiatric visit that is not cancelled. The active team follows them with an event."""
    await referral.put_therapist(capacity=2)
    kept, cancelled = referral.new_id("p"), referral.new_id("p")
    starts_at = datetime.now(UTC) + timedelta(days=2)

    def cancel(patient: str, clinician: str, appointment_id: uuid.UUID) -> AppointmentCancelled:
        return AppointmentCancelled(
            patient_id=patient,
            appointment_id=appointment_id,
            clinician_id=clinician,
            visit_type="psychiatric_follow_up",
            starts_at=starts_at,
            cancelled_by="patient",
            reason_code="patient_request",
        )

    await referral.psychiatric_visit(kept, "psy-wy-booked", starts_at=starts_at)
    visit = await referral.psychiatric_visit(cancelled, "psy-wy-gone", starts_at=starts_at)
    await referral.publish(cancel(cancelled, "psy-wy-gone", visit))
    await referral.visit_applied(visit, "cancelled")

    for patient in (kept, cancelled):
        await referral.grant(patient)
        await referral.publish(assessment(patient, severe=False))
    formed = {}
    for patient in (kept, cancelled):
        events = await referral.events(Topic.REFERRALS, patient, expect=3)
        team = events[2][1]
        assert isinstance(team, CareTeamFormed)
        formed[patient] = team.psychiatrist_id
    assert formed == {kept: "psy-wy-booked", cancelled: None}

    # A clinician without a psychiatric visit of the patient may not refer them (nor take the
    # referral over): refused without a word about the open referral, and nothing changes.
    stranger = await referral.refer(kept, psychiatrist="psy-wy-referrer", visit=False)
    assert (stranger.status_code, stranger.json()["code"]) == (403, "not_treating")
    assert set(stranger.json()) == {"code", "message"}
    team = (await referral.client.get(f"/v1/patients/{kept}/care-team")).json()
    assert team["psychiatrist_id"] == "psy-wy-booked"

    # A psychiatrist learnt after the match joins the team, with an event.
    later = await referral.psychiatric_visit(cancelled, "psy-wy-later", starts_at=starts_at)
    joined = (await referral.events(Topic.REFERRALS, cancelled, expect=4))[3][1]
    assert isinstance(joined, CareTeamMemberJoined)
    assert (joined.clinician_id, joined.member_role, joined.reason_code) == (
        "psy-wy-later", "psychiatrist", "psychiatrist_learnt"
    )  # fmt: skip

    # A more recent visit with another psychiatrist makes them the team's psychiatrist; when
    # it is cancelled, the one before is again.
    newer = await referral.psychiatric_visit(
        kept, "psy-wy-newer", starts_at=starts_at + timedelta(days=1)
    )
    changed = [e for _, e in await referral.events(Topic.REFERRALS, kept, expect=5)][3:]
    assert [(type(e).__name__, e.clinician_id, e.reason_code) for e in changed] == [  # type: ignore[attr-defined]
        ("CareTeamMemberLeft", "psy-wy-booked", "psychiatrist_changed"),
        ("CareTeamMemberJoined", "psy-wy-newer", "psychiatrist_changed"),
    ]
    team = (await referral.client.get(f"/v1/patients/{kept}/care-team")).json()
    assert team["psychiatrist_id"] == "psy-wy-newer"
    await referral.publish(cancel(kept, "psy-wy-newer", newer))
    await referral.visit_applied(newer, "cancelled")
    team = (await referral.client.get(f"/v1/patients/{kept}/care-team")).json()
    assert team["psychiatrist_id"] == "psy-wy-booked"
    # The last psychiatric visit cancelled: the team has no psychiatrist, and says so.
    await referral.publish(cancel(cancelled, "psy-wy-later", later))
    await referral.visit_applied(later, "cancelled")
    left = (await referral.events(Topic.REFERRALS, cancelled, expect=5))[4][1]
    assert isinstance(left, CareTeamMemberLeft)
    assert (left.clinician_id, left.reason_code) == ("psy-wy-later", "no_psychiatric_visit")


async def test_revoking_and_completing(referral: Referral) -> None:
    therapist = await referral.put_therapist(capacity=1)
    matched_patient = await referral.consented_patient()
    waiting_patient = await referral.consented_patient()
    matched = await referral.referred(matched_patient)
    waiting = await referral.referred(waiting_patient)
    assert matched["therapist_id"] == therapist
    assert (waiting["status"], waiting["hold_reason"]) == ("on-hold", "no_capacity")

    # only a matched referral can be completed; a revoked one is final
    response = await referral.client.post(f"/v1/referrals/{waiting['id']}/complete")
    assert response.status_code == 409
    assert response.json()["code"] == "illegal_transition"
    revoked = await referral.client.post(f"/v1/referrals/{waiting['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    again = await referral.client.post(f"/v1/referrals/{waiting['id']}/revoke")
    assert (again.status_code, again.json()["current_status"]) == (409, "revoked")

    # the matched patient leaves the care team: the place is free, the revoked one stays revoked
    completed = await referral.client.post(f"/v1/referrals/{matched['id']}/complete")
    assert completed.status_code == 200
    assert completed.json()["status"] == "completed"
    assert (await referral.referral(waiting["id"]))["status"] == "revoked"
    assert (
        await referral.client.get(f"/v1/patients/{matched_patient}/care-team")
    ).status_code == 404
    free = (await referral.client.get(f"/v1/therapists/{therapist}")).json()
    assert free["active_patients"] == 0
    ended = await referral.events(Topic.REFERRALS, matched_patient, expect=4)
    assert [e.type for e, _ in ended][-1] == "CareTeamEnded"
    assert ended[-1][1].model_dump()["reason_code"] == "completed"

    # the patient may be referred again, the waiting one too
    assert (await referral.referred(matched_patient))["therapist_id"] == therapist
    response = await referral.client.get(f"/v1/referrals/{uuid.uuid4()}")
    assert (response.status_code, response.json()["code"]) == (404, "referral_not_found")


async def test_invalid_requests_are_422_in_the_shared_format(referral: Referral) -> None:
    response = await referral.client.post(
        "/v1/referrals",
        json={
            "patient_id": "p 1",
            "state": "XX",
            "modality": "hypnosis",
            "urgency": "soon",
            "requesting_clinician_id": "psy-1",
            "reason": "free text",
        },
    )
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "invalid request"
    fields = {e["field"] for e in body["errors"]}
    assert {"patient_id", "state", "modality", "urgency", "reason"} <= fields
    assert "free text" not in response.text


@pytest.mark.parametrize(
    "referral_overrides", [{"therapist_seed_file": str(DEFAULT_SEED_FILE)}], indirect=True
)
async def test_the_packaged_roster_is_seeded(referral: Referral) -> None:
    listed = (await referral.client.get("/v1/therapists", params={"state": "NY"})).json()
    ids = [t["id"] for t in listed["therapists"]]
    assert ids == ["thr-ny-1", "thr-ny-2"]
    dbt = (await referral.client.get("/v1/therapists", params={"modality": "DBT"})).json()
    assert [t["id"] for t in dbt["therapists"]] == ["thr-ny-2"]
    one = (await referral.client.get("/v1/therapists/thr-ca-1")).json()
    assert one["licence_states"] == ["CA"]
    assert one["modalities"] == ["ACT", "CBT"]
    assert one["capacity"] == 25
    missing = await referral.client.get("/v1/therapists/thr-nobody")
    assert (missing.status_code, missing.json()["code"]) == (404, "therapist_not_found")


async def test_the_patients_psychiatrist_takes_over_an_unmatched_intake_referral(
    referral: Referral,
) -> None:
    """Only one of the patient's psychiatrists takes over the referral intake opened; a
    clinician without a psychiatric visit of the patient is refused and changes nothing (the
    test asserted the opposite before issue 13: any psychiatrist took it over)."""
    patient = referral.new_id("p")
    await referral.publish(assessment(patient, severe=False))

    async def opened() -> list[dict[str, Any]]:
        return await referral.referrals_of(patient)

    intake_referral = (await referral.eventually(opened, what="the intake referral"))[0]
    assert intake_referral["hold_reason"] == "awaiting_consent"

    stranger = await referral.refer(patient, psychiatrist="psy-wy-stranger", visit=False)
    assert (stranger.status_code, stranger.json()["code"]) == (403, "not_treating")
    assert intake_referral["id"] not in stranger.text
    assert (await referral.referrals_of(patient))[0]["requested_by"] == "intake"

    response = await referral.refer(patient, psychiatrist="psy-wy-9", modality="DBT")
    assert response.status_code == 201, response.text
    taken = response.json()
    assert taken["id"] == intake_referral["id"], "the same referral, not a second one"
    assert (taken["requested_by"], taken["modality"]) == ("psychiatrist", "DBT")
    assert taken["requesting_clinician_id"] == "psy-wy-9"
    events = await referral.events(Topic.REFERRALS, patient, expect=3, settle=1.0)
    requests = [e for _, e in events if isinstance(e, TherapistRequested)]
    assert [r.requested_by for r in requests] == ["intake", "psychiatrist"]
    assert len(await referral.referrals_of(patient)) == 1
