"""Measurement-based care in, e-mails out: a worsening tells each care-team member once (the
therapist only with consent), an earlier slot goes to the psychiatrist, and each education step
reaches the patient once, with the template version recorded."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carebridge_contracts import (
    AppointmentBooked,
    CareTeamFormed,
    ConsentGranted,
    EarlierFollowUpOffered,
    SymptomsWorsened,
    TherapistRequested,
)
from carebridge_devstack.testing import produce, sample_assessment
from carebridge_notification import store

pytestmark = pytest.mark.integration


def mail(person: str) -> str:
    return f"{person}@example.test"


def worsened(patient: str) -> SymptomsWorsened:
    return SymptomsWorsened(
        patient_id=patient,
        assessment_id=uuid.uuid4(),
        previous_assessment_id=uuid.uuid4(),
        reasons=["phq9_rise", "phq9_band_up"],
        phq9_total=16,
        phq9_band="moderately_severe",
        gad7_total=6,
        gad7_band="mild",
        previous_phq9_total=9,
        previous_phq9_band="mild",
        previous_gad7_total=6,
        previous_gad7_band="mild",
        detected_at=datetime.now(UTC),
    )


async def test_worsening_tells_each_member_once_and_offers_the_psychiatrist_a_slot(
    start_service: Any,
) -> None:
    async with start_service() as service:
        patient, psychiatrist, therapist = (service.uid(p) for p in ("p", "psy", "ther"))
        for kind, person in (("clinician", psychiatrist), ("clinician", therapist)):
            await service.put_contact(kind, person, email=mail(person))
        await service.put_contact("patient", patient, email=mail(patient))
        team = CareTeamFormed(
            patient_id=patient,
            care_team_id=uuid.uuid4(),
            psychiatrist_id=psychiatrist,
            therapist_id=therapist,
        )
        await service.send(team)
        grant = ConsentGranted(
            patient_id=patient, consent_id=uuid.uuid4(), scope="care_plan_sharing"
        )
        await service.send(grant)

        event = worsened(patient)
        envelope = await service.send(event, sequence=2)
        await produce(service.settings.kafka_bootstrap_servers, envelope)  # redelivered
        for person in (psychiatrist, therapist):
            [notice] = await service.wait_mail(mail(person), 1)
            assert notice.subject == "A patient in your care team reports worse symptoms"
            assert f"/care-teams/{team.care_team_id}/plan" in notice.body
            # a word boundary: the link's UUID may hold the digits 1 and 6 side by side
            assert not re.search(r"\b16\b", notice.body) and patient not in notice.body
        booked = datetime.now(UTC) + timedelta(days=10)
        offer = EarlierFollowUpOffered(
            patient_id=patient,
            appointment_id=uuid.uuid4(),
            clinician_id=psychiatrist,
            assessment_id=event.assessment_id,
            booked_starts_at=booked,
            offered_starts_at=booked - timedelta(days=7),
            offered_ends_at=booked - timedelta(days=7, minutes=-30),
        )
        await service.send(offer)
        await service.wait_mail(mail(psychiatrist), 2)
        await service.eventually(lambda: service.applied(envelope.event_id))
        rows = await service.wait_deliveries(3, status="sent", patient_id=patient)
        told = sorted(
            (r["recipient_id"], r["template"]) for r in rows if r["template"] != "care_plan_updated"
        )
        assert told == sorted(
            [
                (psychiatrist, "symptoms_worsened_clinician"),
                (therapist, "symptoms_worsened_clinician"),
                (psychiatrist, "earlier_follow_up_offered_clinician"),
            ]
        )
        assert len(service.mail_to(mail(therapist))) == 1  # once, despite the redelivery
        assert service.mail_to(mail(patient)) == []  # the patient is not told of the worsening


async def test_education_reaches_the_patient_once_per_step_with_its_version(
    start_service: Any,
) -> None:
    async with start_service() as service:
        patient = service.uid("p")
        await service.put_contact("patient", patient, email=mail(patient))
        await service.send(sample_assessment(patient))  # PHQ-9 moderate, GAD-7 mild
        request = TherapistRequested(
            patient_id=patient,
            referral_id=uuid.uuid4(),
            state="NY",
            modality="IPT",
            urgency="routine",
            requested_by="psychiatrist",
            requesting_clinician_id="psy-1",
        )
        await service.send(request, sequence=1)
        await service.send(sample_assessment(patient), sequence=2)  # a second intake: no repeat
        starts = datetime.now(UTC) + timedelta(days=20)
        follow_up = AppointmentBooked(
            patient_id=patient,
            appointment_id=uuid.uuid4(),
            clinician_id="psy-1",
            clinician_role="psychiatrist",
            visit_type="psychiatric_follow_up",
            state="NY",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=30),
        )
        await service.send(follow_up)
        mails = await service.wait_mail(mail(patient), 4)
        subjects = [m.subject for m in mails]
        assert "What your assessment means, and what happens next" in subjects
        assert "About therapy, and how we find your therapist" in subjects
        assert "Your first follow-up, and what your scores mean" in subjects
        assessment_mail = next(m for m in mails if m.subject.startswith("What your"))
        assert '"moderate" range' in assessment_mail.body and '"mild" range' in assessment_mail.body
        assert "interpersonal therapy (IPT)" in "".join(m.body for m in mails)
        async with service.ctx.pool.acquire() as conn:
            records = await store.education_of(conn, patient)
        assert sorted((r.step, r.template, r.template_version) for r in records) == [
            ("assessment", "education_after_assessment", 1),
            ("first_follow_up", "education_first_follow_up", 1),
            ("referral", "education_after_referral", 1),
        ]
        versions = await service.ctx.pool.fetch(
            "SELECT params ->> 'template_version' AS version FROM deliveries"
            " WHERE patient_id = $1 AND template LIKE 'education%'",
            patient,
        )
        # the second assessment taught nothing new; each message renders the recorded version
        assert [r["version"] for r in versions] == ["1", "1", "1"]
