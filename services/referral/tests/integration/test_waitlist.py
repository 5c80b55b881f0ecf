"""The waitlist: held when nobody can take a referral, served urgent first when places appear."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from carebridge_contracts import ReferralWaitlisted, TherapistMatched, Topic

if TYPE_CHECKING:
    from conftest import Referral

pytestmark = pytest.mark.integration


async def test_capacity_appearing_serves_the_urgent_referral_before_an_older_routine_one(
    referral: Referral,
) -> None:
    therapist = await referral.put_therapist(capacity=0)
    older_routine = await referral.consented_patient("routine")
    newer_urgent = await referral.consented_patient("urgent")
    other_modality = await referral.consented_patient("emdr")

    routine = await referral.referred(older_routine, urgency="routine")
    urgent = await referral.referred(newer_urgent, urgency="urgent")
    emdr = await referral.referred(other_modality, modality="EMDR")
    assert (routine["status"], routine["hold_reason"]) == ("on-hold", "no_capacity")
    assert (urgent["status"], urgent["hold_reason"]) == ("on-hold", "no_capacity")
    # nobody licensed in WY offers EMDR
    assert (emdr["status"], emdr["hold_reason"]) == ("on-hold", "no_licensed_therapist")
    assert routine["created_at"] < urgent["created_at"]
    for patient, reason in ((older_routine, "no_capacity"), (newer_urgent, "no_capacity")):
        events = await referral.events(Topic.REFERRALS, patient, expect=2)
        held = events[1][1]
        assert isinstance(held, ReferralWaitlisted)
        assert held.reason_code == reason

    waitlist = (await referral.client.get("/v1/referrals", params={"status": "on-hold"})).json()
    assert {r["id"] for r in waitlist["referrals"]} >= {routine["id"], urgent["id"], emdr["id"]}

    # one place appears: the urgent referral takes it although the routine one is older
    await referral.put_therapist(therapist, capacity=1, expect=200)
    assert (await referral.referral(urgent["id"]))["therapist_id"] == therapist
    still = await referral.referral(routine["id"])
    assert (still["status"], still["hold_reason"], still["therapist_id"]) == (
        "on-hold",
        "no_capacity",
        None,
    )
    matched = await referral.events(Topic.REFERRALS, newer_urgent, expect=4)
    assert [e.type for e, _ in matched][2:] == ["TherapistMatched", "CareTeamFormed"]
    assert isinstance(matched[2][1], TherapistMatched)
    # a hold whose reason did not change is not announced again
    assert [e.type for e, _ in await referral.events(Topic.REFERRALS, older_routine)] == [
        "TherapistRequested",
        "ReferralWaitlisted",
    ]

    # the urgent patient leaves the care team: the freed place goes to the routine referral
    completed = await referral.client.post(f"/v1/referrals/{urgent['id']}/complete")
    assert completed.status_code == 200
    assert (await referral.referral(routine["id"]))["therapist_id"] == therapist
    assert (await referral.referral(emdr["id"]))["therapist_id"] is None

    # a new modality and place make the EMDR referral matchable
    await referral.put_therapist(therapist, capacity=2, modalities=("CBT", "EMDR"), expect=200)
    assert (await referral.referral(emdr["id"]))["therapist_id"] == therapist
    load = (await referral.client.get(f"/v1/therapists/{therapist}")).json()
    assert (load["active_patients"], load["free_places"]) == (2, 0)


async def test_a_revoked_referral_is_never_matched(referral: Referral) -> None:
    therapist = await referral.put_therapist(capacity=0)
    patient = await referral.consented_patient()
    held = await referral.referred(patient, urgency="urgent")
    revoked = await referral.client.post(f"/v1/referrals/{held['id']}/revoke")
    assert revoked.json()["status"] == "revoked"

    await referral.put_therapist(therapist, capacity=5, expect=200)
    after = await referral.referral(held["id"])
    assert (after["status"], after["therapist_id"]) == ("revoked", None)
    types = [e.type for e, _ in await referral.events(Topic.REFERRALS, patient, settle=2.0)]
    assert "TherapistMatched" not in types


async def test_a_state_without_therapists_is_no_licensed_therapist(referral: Referral) -> None:
    patient = await referral.consented_patient()
    held = await referral.referred(patient, state="VT")
    assert held["hold_reason"] == "no_licensed_therapist"
    # a therapist licensed there appears
    therapist = await referral.put_therapist(states=("VT", "WY"), capacity=1)
    assert (await referral.referral(held["id"]))["therapist_id"] == therapist


async def test_revoking_consent_holds_a_waiting_referral_for_consent(referral: Referral) -> None:
    therapist = await referral.put_therapist(capacity=0)
    patient = await referral.consented_patient()
    held = await referral.referred(patient)
    assert held["hold_reason"] == "no_capacity"
    await referral.revoke_consent(patient)
    assert (await referral.referral(held["id"]))["hold_reason"] == "awaiting_consent"
    # a place appears, but the patient has not consented: still waiting
    await referral.put_therapist(therapist, capacity=1, expect=200)
    assert (await referral.referral(held["id"]))["therapist_id"] is None
    await referral.grant(patient)
    assert (await referral.referral(held["id"]))["therapist_id"] == therapist
    reasons = [
        event.reason_code
        for _, event in await referral.events(Topic.REFERRALS, patient, expect=5)
        if isinstance(event, ReferralWaitlisted)
    ]
    assert reasons == ["no_capacity", "awaiting_consent"]
