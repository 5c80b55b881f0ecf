"""Measurement-based care through the four services running as processes (issue 17): intake, a
first visit, a care team, then two follow-ups with repeat measures, one improving and one
worsening; the trend in the shared plan, each care-team member told once of the worsening, an
earlier follow-up offered to the psychiatrist, and an education message at each step."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.demo import CareClient, wait_until
from carebridge_devstack.dev_auth import Actor
from carebridge_devstack.smtp_sink import ReceivedMail
from carebridge_devstack.system import LocalSystem
from carebridge_devstack.testing import bearer, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.journey]

IMPROVED = {"phq9": [1, 1, 0, 1, 0, 1, 0, 0, 0], "gad7": [1, 0, 0, 1, 0, 0, 0]}  # 4, 2
WORSE = {"phq9": [2, 2, 2, 2, 1, 2, 1, 1, 0], "gad7": [2, 1, 1, 1, 1, 1, 1]}  # 13, 8
WORSENED_SUBJECT = "A patient in your care team reports worse symptoms"
EDUCATION_SUBJECTS = (
    "What your assessment means, and what happens next",  # after the assessment
    "About therapy, and how we find your therapist",  # after the referral
    "Your therapist, and how your two clinicians work together",  # after the match
    "Your first follow-up, and what your scores mean",  # at the first follow-up
)


def test_follow_ups_with_repeat_measures_trend_worsening_and_education(
    system: LocalSystem, client: CareClient
) -> None:
    patient = f"j-{uuid.uuid4().hex[:10]}"
    patient_email = f"{patient}@patients.example"
    client.set_contact("patient", patient, patient_email)

    def mails_to(address: str, subject: str) -> list[ReceivedMail]:
        return [m for m in system.mailbox.to(address) if m.subject == subject]

    def wait_subject(address: str, subject: str) -> list[ReceivedMail]:
        return wait_until(subject, lambda: mails_to(address, subject), 60)

    # intake (PHQ-9 11 moderate, GAD-7 7 mild: the baseline), first visit, referral, care team
    baseline = client.assess(patient, state="NY", therapy_interest=False)
    client.wait_eligible(patient)
    first_slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    psychiatrist = first_slot["clinician_id"]
    psychiatrist_email = f"{psychiatrist}.{patient}@clinicians.example"
    client.set_contact("clinician", psychiatrist, psychiatrist_email)
    first_visit = client.book(patient, first_slot)
    client.complete(first_visit["id"])
    client.refer(patient, psychiatrist)
    client.grant_consent(patient)
    therapist = client.wait_care_team(patient)["therapist_id"]
    therapist_email = f"{therapist}.{patient}@clinicians.example"
    client.set_contact("clinician", therapist, therapist_email)

    # follow-up 1: its reminder links to the repeat measures; the patient improved
    now = client.notification_now()
    follow_up_1 = client.book_follow_up(patient, psychiatrist, "NY", after=now)
    starts = datetime.fromisoformat(follow_up_1["starts_at"])
    client.advance_notification_clock((starts - timedelta(hours=1) - now).total_seconds() + 5)
    reminder = wait_until(
        "the follow-up's reminder",
        lambda: [m for m in system.mailbox.to(patient_email) if "Reminder" in m.subject],
        60,
    )[-1]
    link = f"{system.url('intake')}/v1/outcome-measures?appointment_id={follow_up_1['id']}"
    assert link in reminder.body and "PHQ-9" in reminder.body
    words = set(re.findall(r"[\w-]+", reminder.body.replace(link, "")))
    assert not {str(baseline["phq9_total"]), baseline["phq9_band"]} & words  # no scores

    better = client.repeat_measure(patient, **IMPROVED, appointment_id=follow_up_1["id"])
    assert (better["phq9_total"], better["phq9_change"]) == (4, 4 - baseline["phq9_total"])
    assert better["phq9_response"] and better["phq9_remission"] and better["safety"] is None
    client.complete(follow_up_1["id"])

    # follow-up 2 booked a week on (free slots lie before it); the patient worsened
    later = client.notification_now() + timedelta(days=7)
    follow_up_2 = client.book_follow_up(patient, psychiatrist, "NY", after=later)
    worse = client.repeat_measure(patient, **WORSE, appointment_id=follow_up_2["id"])
    assert (worse["phq9_total"], worse["phq9_band"], worse["gad7_total"]) == (13, "moderate", 8)

    # each care-team member is told once; the psychiatrist is offered an earlier slot
    for address in (psychiatrist_email, therapist_email):
        wait_until(
            f"the worsening notice to {address}",
            lambda a=address: mails_to(a, WORSENED_SUBJECT),
            60,
        )  # type: ignore[misc]
    offer = wait_until(
        "the earlier follow-up offer",
        lambda: [m for m in system.mailbox.to(psychiatrist_email) if "earlier" in m.subject],
        60,
    )[0]
    assert f"/appointments/{follow_up_2['id']}" in offer.body
    events = asyncio.run(
        read_topic(system.bootstrap, str(Topic.APPOINTMENTS),
                   where=lambda r: r.key == patient.encode(), expect=6, timeout=60)
    )  # fmt: skip
    offers = [
        e for e in (Envelope.from_bytes(r.value) for r in events)
        if e.type == "EarlierFollowUpOffered"
    ]  # fmt: skip
    assert len(offers) == 1 and offers[0].producer == "booking"
    offered = offers[0].data
    assert offered["appointment_id"] == follow_up_2["id"]
    assert offered["clinician_id"] == psychiatrist
    assert offered["offered_starts_at"] < offered["booked_starts_at"]

    # the trend is in the shared plan, for the patient and both clinicians; never the answers
    def trend_of(who: Actor) -> list[dict[str, Any]] | None:
        points: list[dict[str, Any]] = client.care_plan(patient, acting_as=who)["outcomes"]["trend"]
        return points if len(points) == 3 else None

    trend = wait_until("the trend in the plan", lambda: trend_of(("patient", patient)), 60)
    assert [p["kind"] for p in trend] == ["intake", "repeat", "repeat"]
    assert [p["phq9_total"] for p in trend] == [baseline["phq9_total"], 4, 13]
    assert trend[1]["phq9_remission"] is True and trend[2]["phq9_remission"] is False
    for clinician in (psychiatrist, therapist):
        assert trend_of(("clinician", clinician)) == trend
    plan = client.care_plan(patient, acting_as=("clinician", therapist))
    assert plan["outcomes"]["latest"]["assessment_id"] == worse["assessment_id"]
    assert "phq9" not in plan["outcomes"]["latest"] and "answers" not in str(plan)
    stranger = client.call(
        "referral", "GET", f"/v1/care-plans/{patient}",
        headers=bearer("clinician", f"psy-stranger-{patient}"),
    )  # fmt: skip
    assert stranger.status_code == 403 and "phq9" not in stranger.text

    # education at each step, in the SMTP sink, once each
    for subject in EDUCATION_SUBJECTS:
        wait_subject(patient_email, subject)
    asyncio.run(asyncio.sleep(2.0))  # room for a wrong extra message to arrive
    for subject in EDUCATION_SUBJECTS:
        assert len(mails_to(patient_email, subject)) == 1, subject
    for address in (psychiatrist_email, therapist_email):
        assert len(mails_to(address, WORSENED_SUBJECT)) == 1, "told once of the worsening"
    assert mails_to(patient_email, WORSENED_SUBJECT) == []
