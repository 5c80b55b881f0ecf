"""Psychiatry and therapy working together, through all four services running as processes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.demo import CareClient, wait_for_mail, wait_until
from carebridge_devstack.system import LocalSystem
from carebridge_devstack.testing import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.journey]


def test_referral_care_team_and_shared_plan(system: LocalSystem, client: CareClient) -> None:
    patient = f"j-{uuid.uuid4().hex[:10]}"
    patient_email = f"{patient}@patients.example"
    client.set_contact("patient", patient, patient_email)

    # intake with therapy interest, then the first psychiatric visit, completed
    assert client.assess(patient, state="NY", therapy_interest=True)["safety"] is None
    client.wait_eligible(patient)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    psychiatrist = slot["clinician_id"]
    psychiatrist_email = f"{psychiatrist}.{patient}@clinicians.example"
    client.set_contact("clinician", psychiatrist, psychiatrist_email)
    visit = client.book(patient, slot)
    assert client.complete(visit["id"])["status"] == "fulfilled"

    # the psychiatrist refers; without consent the therapist cannot see the plan yet
    referral = client.refer(patient, psychiatrist)
    assert referral["requested_by"] == "psychiatrist"
    assert referral["status"] == "on-hold" and referral["hold_reason"] == "awaiting_consent"
    client.grant_consent(patient)
    team = client.wait_care_team(patient)
    therapist = team["therapist_id"]
    assert team["psychiatrist_id"] == psychiatrist
    therapist_email = f"{therapist}.{patient}@clinicians.example"
    client.set_contact("clinician", therapist, therapist_email)

    # the patient is told about the match
    def match_mails() -> list[str]:
        return [m.subject for m in system.mailbox.to(patient_email) if "therapist" in m.subject]

    wait_until("the therapist-match email", match_mails, 60)

    # booking offers therapy-intake slots with the matched therapist only, 53 minutes long
    therapy = client.therapy_slot(patient, "NY", client.notification_now())
    assert therapy["clinician_id"] == therapist
    intake = client.book(patient, therapy)
    assert intake["visit_type"] == "therapy_intake" and intake["clinician_id"] == therapist

    # both clinicians write the shared plan; each hears of the other's change; stale refused
    first = client.update_plan(
        patient, psychiatrist, 0, goals=["Reduce PHQ-9 below 10"], diagnosis_codes=["F32.1"],
        medication_summary="sertraline 50 mg daily",
    )  # fmt: skip
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    wait_for_mail(system.mailbox, therapist_email, "the therapist's plan-change email")
    second = client.update_plan(
        patient, therapist, 1, goals=["Reduce PHQ-9 below 10", "Behavioural activation"],
        diagnosis_codes=["F32.1"], medication_summary="sertraline 50 mg daily",
        therapy_modality="CBT", therapy_frequency={"sessions_per_month": 4},
    )  # fmt: skip
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    stale = client.update_plan(patient, psychiatrist, 1, goals=["an edit based on v1"])
    assert stale.status_code == 409

    def plan_mails(address: str) -> list[str]:
        return [m.subject for m in system.mailbox.to(address) if "plan" in m.subject.lower()]

    wait_until("the psychiatrist's plan-change email", lambda: plan_mails(psychiatrist_email), 60)
    asyncio.run(asyncio.sleep(2.0))  # room for a wrong extra message to arrive
    assert len(plan_mails(psychiatrist_email)) == 1, "told once, of the therapist's change"
    assert len(plan_mails(therapist_email)) == 1, "told once, of the psychiatrist's change"

    # a stranger to the care team cannot read the plan; the audit trail shows who wrote it
    outsider = client.call(
        "referral", "GET", f"/v1/care-plans/{patient}", acting_as=("clinician", "psy-ca-1")
    )
    assert outsider.status_code == 403
    trail = client.ok("referral", "GET", "/v1/audit-events", params={"patient_id": patient})
    writes = [  # care-plan rows: the referral's open and take-over have rows of their own now
        (e["actor_sub"], e["action"])
        for e in trail["events"]
        if e["action"] == "update" and e["resource_type"] == "care_plan"
    ]
    assert writes == [(psychiatrist, "update"), (therapist, "update")]

    plan_events = asyncio.run(
        read_topic(
            system.bootstrap, str(Topic.CARE_PLANS), where=lambda r: r.key == patient.encode(),
            expect=2, settle=1.0,
        )
    )  # fmt: skip
    updates = [Envelope.from_bytes(r.value) for r in plan_events]
    assert [(u.sequence, u.data["author_id"]) for u in updates] == [
        (1, psychiatrist), (2, therapist),
    ]  # fmt: skip
    assert all("goals" in u.data["changed_sections"] for u in updates)
    assert all("sertraline" not in r.value.decode() for r in plan_events), "no content in events"
