"""The shared treatment plan: care-team access, consent, optimistic versions, content-free events."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from carebridge_contracts import CarePlanUpdated, ConsentRevoked, OutcomeMeasured, Topic
from carebridge_devstack.testing import bearer, sample_assessment

if TYPE_CHECKING:
    from conftest import Referral

pytestmark = pytest.mark.integration

PSYCHIATRIST = "psy-wy-plan"
SECRET_GOAL = "walk the dog with Aunt Mabel every morning"
PLAN: dict[str, Any] = {
    "goals": [SECRET_GOAL, "sleep seven hours"],
    "diagnosis_codes": ["F33.1"],
    "medication_summary": "sertraline 100 mg each morning",
}


async def get_plan(referral: Referral, patient: str, clinician: str) -> httpx.Response:
    return await referral.client.get(
        f"/v1/care-plans/{patient}", headers=bearer("clinician", clinician)
    )


async def put_plan(
    referral: Referral,
    patient: str,
    clinician: str,
    body: dict[str, Any],
    if_match: str | None = None,
) -> httpx.Response:
    headers = bearer("clinician", clinician)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await referral.client.put(f"/v1/care-plans/{patient}", json=body, headers=headers)


async def care_team(referral: Referral, *, consent: bool = True) -> tuple[str, str]:
    """A patient matched with a new WY therapist; returns (patient, therapist)."""
    therapist = await referral.put_therapist()
    patient = referral.new_id("p")
    if consent:
        await referral.grant(patient)
    await referral.referred(patient, psychiatrist=PSYCHIATRIST)
    return patient, therapist


async def test_the_therapist_sees_the_plan_only_with_consent(referral: Referral) -> None:
    patient, therapist = await care_team(referral, consent=False)

    # before consent the referral waits: the therapist is in no care team with the patient
    before = await get_plan(referral, patient, therapist)
    assert (before.status_code, before.json()["code"]) == (403, "not_in_care_team")
    # the referring psychiatrist may start the plan already
    created = await put_plan(referral, patient, PSYCHIATRIST, PLAN, if_match='"0"')
    assert created.status_code == 200, created.text

    await referral.grant(patient)
    granted = await get_plan(referral, patient, therapist)
    assert granted.status_code == 200
    assert granted.json()["goals"] == PLAN["goals"]

    await referral.revoke_consent(patient)
    refused = await get_plan(referral, patient, therapist)
    assert refused.status_code == 403
    assert refused.json()["code"] == "consent_required"
    assert SECRET_GOAL not in refused.text
    write = await put_plan(referral, patient, therapist, {**PLAN, "goals": ["x"]}, '"1"')
    assert (write.status_code, write.json()["code"]) == (403, "consent_required")
    # the psychiatrist still treats the patient and keeps access
    assert (await get_plan(referral, patient, PSYCHIATRIST)).status_code == 200
    revoked = (await referral.events(Topic.CONSENTS, patient, expect=2))[1][1]
    assert isinstance(revoked, ConsentRevoked)

    # consent again: access again
    await referral.grant(patient)
    assert (await get_plan(referral, patient, therapist)).status_code == 200


async def test_versions_conflicts_and_content_free_events(referral: Referral) -> None:
    patient, therapist = await care_team(referral)

    blank = await get_plan(referral, patient, PSYCHIATRIST)
    assert blank.status_code == 200
    assert (blank.json()["version"], blank.headers["ETag"]) == (0, '"0"')
    assert blank.json()["goals"] == []

    first = await put_plan(referral, patient, PSYCHIATRIST, PLAN, if_match=blank.headers["ETag"])
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.headers["ETag"]) == (1, '"1"')
    assert first.json()["updated_by_role"] == "psychiatrist"

    read = await get_plan(referral, patient, therapist)
    assert read.json()["version"] == 1
    therapist_change = {
        **read.json(),
        "therapy_modality": "CBT",
        "therapy_frequency": {"sessions_per_month": 4},
    }
    for key in ("patient_id", "version", "updated_at", "updated_by", "updated_by_role"):
        therapist_change.pop(key)
    second = await put_plan(referral, patient, therapist, therapist_change, if_match='"1"')
    assert second.status_code == 200, second.text
    assert (second.json()["version"], second.json()["updated_by"]) == (2, therapist)

    # the psychiatrist writes from the stale version 1: refused with the current version
    stale = await put_plan(
        referral, patient, PSYCHIATRIST, {**PLAN, "goals": ["rest"]}, if_match='"1"'
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_conflict"
    assert stale.json()["current_version"] == 2
    assert stale.headers["ETag"] == '"2"'
    # no precondition at all
    missing = await put_plan(referral, patient, PSYCHIATRIST, PLAN)
    assert (missing.status_code, missing.json()["code"]) == (428, "precondition_required")
    # the version may also travel in the body
    third = await put_plan(
        referral,
        patient,
        PSYCHIATRIST,
        {**therapist_change, "diagnosis_codes": ["F33.1", "F41.1"], "version": 2},
    )
    assert third.status_code == 200, third.text
    assert third.json()["version"] == 3
    # the same plan again is no change: same version, no event
    same = await put_plan(
        referral,
        patient,
        PSYCHIATRIST,
        {**therapist_change, "diagnosis_codes": ["F33.1", "F41.1"]},
        if_match='"3"',
    )
    assert (same.status_code, same.json()["version"]) == (200, 3)

    events = await referral.events(Topic.CARE_PLANS, patient, expect=3, settle=2.0)
    assert len(events) == 3
    updates = [event for _, event in events]
    assert all(isinstance(u, CarePlanUpdated) for u in updates)
    assert [(u.model_dump()["plan_version"], u.model_dump()["author_role"]) for u in updates] == [
        (1, "psychiatrist"),
        (2, "therapist"),
        (3, "psychiatrist"),
    ]
    assert [u.model_dump()["changed_sections"] for u in updates] == [
        ["goals", "diagnosis_codes", "medication_summary"],
        ["therapy_modality", "therapy_frequency"],
        ["diagnosis_codes"],
    ]
    for envelope, _ in events:
        assert set(envelope.data) == {
            "patient_id",
            "plan_version",
            "changed_sections",
            "author_id",
            "author_role",
        }
        raw = envelope.to_bytes().decode()
        assert "Mabel" not in raw
        assert "sertraline" not in raw
        assert "F33.1" not in raw


async def test_only_the_care_team_may_open_the_plan(referral: Referral) -> None:
    patient, therapist = await care_team(referral)
    other_therapist = await referral.put_therapist()
    created = await put_plan(referral, patient, PSYCHIATRIST, PLAN, if_match="0")
    assert created.status_code == 200

    for outsider in (other_therapist, "psy-someone-else"):
        read = await get_plan(referral, patient, outsider)
        assert (read.status_code, read.json()["code"]) == (403, "not_in_care_team")
        assert SECRET_GOAL not in read.text
        write = await put_plan(referral, patient, outsider, PLAN, if_match='"1"')
        assert (write.status_code, write.json()["code"]) == (403, "not_in_care_team")

    anonymous = await referral.client.get(f"/v1/care-plans/{patient}", auth=None)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "authentication_required")
    # the patient reads their own plan; nobody else who is not in the care team does
    own = await referral.client.get(f"/v1/care-plans/{patient}", headers=bearer("patient", patient))
    assert own.status_code == 200 and own.json()["goals"] == PLAN["goals"]
    for role, sub in (("patient", "p-other"), ("coordinator", "coord-1"), ("ops", "ops-1")):
        other = await referral.client.get(f"/v1/care-plans/{patient}", headers=bearer(role, sub))
        assert other.status_code == 403 and SECRET_GOAL not in other.text
    patient_write = await referral.client.put(
        f"/v1/care-plans/{patient}",
        json=PLAN,
        headers={**bearer("patient", patient), "If-Match": '"1"'},
    )
    assert (patient_write.status_code, patient_write.json()["code"]) == (403, "role_not_allowed")
    # a patient nobody treats: nobody may open the plan
    stranger = await get_plan(referral, referral.new_id("p"), PSYCHIATRIST)
    assert stranger.status_code == 403

    # psychotherapy notes are never part of the plan
    notes = await put_plan(
        referral, patient, therapist, {**PLAN, "psychotherapy_notes": "session 3"}, '"1"'
    )
    assert notes.status_code == 422
    assert notes.json()["errors"][0]["field"] == "psychotherapy_notes"
    assert "session 3" not in notes.text
    bad_code = await put_plan(
        referral, patient, therapist, {**PLAN, "diagnosis_codes": ["depression"]}, '"1"'
    )
    assert bad_code.status_code == 422
    bad_tag = await put_plan(referral, patient, therapist, PLAN, if_match="*")
    assert bad_tag.status_code == 422

    # after the care team ends the therapist is out
    referral_id = (await referral.referrals_of(patient))[0]["id"]
    await referral.client.post(f"/v1/referrals/{referral_id}/complete")
    gone = await get_plan(referral, patient, therapist)
    assert (gone.status_code, gone.json()["code"]) == (403, "not_in_care_team")
    assert (await get_plan(referral, patient, PSYCHIATRIST)).status_code == 200


async def test_the_plan_carries_the_outcome_trend_never_the_answers(referral: Referral) -> None:
    patient, therapist = await care_team(referral)
    baseline = sample_assessment(patient, state="WY")  # PHQ-9 12 moderate, GAD-7 6 mild
    await referral.publish(baseline)
    better = OutcomeMeasured(
        patient_id=patient,
        assessment_id=uuid.uuid4(),
        baseline_assessment_id=baseline.assessment_id,
        phq9_total=4,
        phq9_band="minimal",
        gad7_total=5,
        gad7_band="mild",
        baseline_phq9_total=12,
        baseline_gad7_total=6,
        phq9_change=-8,
        gad7_change=-1,
        phq9_meaningful_change=True,
        gad7_meaningful_change=False,
        phq9_response=True,
        phq9_remission=True,
        gad7_response=False,
        gad7_remission=False,
        measured_at=baseline.completed_at + timedelta(days=30),
    )
    await referral.publish(better)

    async def trend_of(clinician: str) -> dict[str, Any] | None:
        response = await get_plan(referral, patient, clinician)
        assert response.status_code == 200, response.text
        outcomes: dict[str, Any] = response.json()["outcomes"]
        return outcomes if len(outcomes["trend"]) == 2 else None

    outcomes = await referral.eventually(lambda: trend_of(PSYCHIATRIST), what="the trend")
    assert [p["kind"] for p in outcomes["trend"]] == ["intake", "repeat"]
    assert outcomes["baseline"]["assessment_id"] == str(baseline.assessment_id)
    latest = outcomes["latest"]
    assert latest["assessment_id"] == str(better.assessment_id)
    assert (latest["phq9_total"], latest["phq9_change"], latest["phq9_remission"]) == (4, -8, True)
    assert (latest["gad7_band"], latest["gad7_meaningful_change"]) == ("mild", False)
    assert not {"phq9", "gad7", "phq9_answers", "answers"} & set(latest)
    assert await trend_of(therapist) is not None  # the consenting care team
    mine = await referral.client.get(
        f"/v1/care-plans/{patient}", headers=bearer("patient", patient)
    )
    assert mine.status_code == 200 and len(mine.json()["outcomes"]["trend"]) == 2
    stranger = await get_plan(referral, patient, "psy-wy-stranger")
    assert stranger.status_code == 403 and "phq9" not in stranger.text
    audited = await referral.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE patient_id = $1 AND resource_type = 'outcome_trend'",
        patient,
    )
    assert audited >= 3
