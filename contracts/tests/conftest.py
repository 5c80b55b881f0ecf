from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AssessmentCompleted,
    BaseEvent,
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ConsentRevoked,
    EarlierFollowUpOffered,
    NotificationFailed,
    NotificationSent,
    OutcomeMeasured,
    ReferralWaitlisted,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
    TherapistRequested,
)

PATIENT = "pat-0001"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _id(n: int) -> UUID:
    return UUID(int=n)


def example_events() -> list[BaseEvent]:
    """One valid instance of every event model."""
    return [
        AssessmentCompleted(
            patient_id=PATIENT,
            assessment_id=_id(1),
            state="NY",
            phq9_total=12,
            phq9_band="moderate",
            gad7_total=3,
            gad7_band="minimal",
            item9_positive=False,
            cssrs_imminent_risk=False,
            therapy_interest=True,
            preferred_channel="email",
            completed_at=T0,
        ),
        SafetyRiskFlagged(
            patient_id=PATIENT,
            assessment_id=_id(1),
            state="NY",
            reasons=["phq9_item9", "cssrs_q4"],
            imminent=True,
            flagged_at=T0,
        ),
        AppointmentBooked(
            patient_id=PATIENT,
            appointment_id=_id(2),
            clinician_id="clin-7",
            clinician_role="psychiatrist",
            visit_type="initial_psychiatric_evaluation",
            state="NY",
            starts_at=T0 + timedelta(days=2),
            ends_at=T0 + timedelta(days=2, minutes=60),
        ),
        AppointmentRescheduled(
            patient_id=PATIENT,
            appointment_id=_id(2),
            clinician_id="clin-7",
            visit_type="initial_psychiatric_evaluation",
            previous_starts_at=T0 + timedelta(days=2),
            starts_at=T0 + timedelta(days=3),
            ends_at=T0 + timedelta(days=3, minutes=60),
        ),
        AppointmentCancelled(
            patient_id=PATIENT,
            appointment_id=_id(2),
            clinician_id="clin-7",
            visit_type="psychiatric_follow_up",
            starts_at=T0 + timedelta(days=3),
            cancelled_by="patient",
            reason_code="patient_request",
        ),
        AppointmentCompleted(
            patient_id=PATIENT,
            appointment_id=_id(3),
            clinician_id="clin-7",
            visit_type="psychiatric_follow_up",
            starts_at=T0,
            ends_at=T0 + timedelta(minutes=30),
        ),
        AppointmentNoShow(
            patient_id=PATIENT,
            appointment_id=_id(4),
            clinician_id="clin-9",
            visit_type="therapy_session",
            starts_at=T0,
        ),
        TherapistRequested(
            patient_id=PATIENT,
            referral_id=_id(5),
            state="NY",
            modality="CBT",
            urgency="routine",
            requested_by="psychiatrist",
            requesting_clinician_id="clin-7",
        ),
        TherapistMatched(
            patient_id=PATIENT,
            referral_id=_id(5),
            therapist_id="clin-9",
            psychiatrist_id="clin-7",
            modality="CBT",
            state="NY",
        ),
        ReferralWaitlisted(
            patient_id=PATIENT,
            referral_id=_id(5),
            state="NY",
            modality="EMDR",
            urgency="urgent",
            reason_code="no_capacity",
        ),
        CareTeamFormed(
            patient_id=PATIENT, care_team_id=_id(6), psychiatrist_id="clin-7", therapist_id="clin-9"
        ),
        CareTeamMemberJoined(
            patient_id=PATIENT,
            care_team_id=_id(6),
            referral_id=_id(5),
            clinician_id="clin-8",
            member_role="psychiatrist",
            reason_code="psychiatrist_changed",
        ),
        CareTeamMemberLeft(
            patient_id=PATIENT,
            care_team_id=_id(6),
            referral_id=_id(5),
            clinician_id="clin-7",
            member_role="psychiatrist",
            reason_code="psychiatrist_changed",
        ),
        CareTeamEnded(
            patient_id=PATIENT,
            care_team_id=_id(6),
            referral_id=_id(5),
            therapist_id="clin-9",
            psychiatrist_id="clin-7",
            reason_code="completed",
        ),
        CarePlanUpdated(
            patient_id=PATIENT,
            plan_version=2,
            changed_sections=["goals", "therapy_frequency"],
            author_id="clin-9",
            author_role="therapist",
        ),
        ConsentGranted(
            patient_id=PATIENT, consent_id=_id(7), scope="care_plan_sharing", grantee_id="clin-9"
        ),
        ConsentRevoked(patient_id=PATIENT, consent_id=_id(7), scope="care_plan_sharing"),
        OutcomeMeasured(
            patient_id=PATIENT,
            assessment_id=_id(10),
            baseline_assessment_id=_id(1),
            appointment_id=_id(3),
            phq9_total=5,
            phq9_band="mild",
            gad7_total=3,
            gad7_band="minimal",
            baseline_phq9_total=12,
            baseline_gad7_total=3,
            phq9_change=-7,
            gad7_change=0,
            phq9_meaningful_change=True,
            gad7_meaningful_change=False,
            phq9_response=True,
            phq9_remission=False,
            gad7_response=False,
            gad7_remission=True,
            measured_at=T0 + timedelta(days=30),
        ),
        SymptomsWorsened(
            patient_id=PATIENT,
            assessment_id=_id(11),
            previous_assessment_id=_id(10),
            reasons=["phq9_rise", "phq9_band_up"],
            phq9_total=15,
            phq9_band="moderately_severe",
            gad7_total=4,
            gad7_band="minimal",
            previous_phq9_total=5,
            previous_phq9_band="mild",
            previous_gad7_total=3,
            previous_gad7_band="minimal",
            detected_at=T0 + timedelta(days=60),
        ),
        EarlierFollowUpOffered(
            patient_id=PATIENT,
            appointment_id=_id(12),
            clinician_id="clin-7",
            assessment_id=_id(11),
            booked_starts_at=T0 + timedelta(days=70),
            offered_starts_at=T0 + timedelta(days=61),
            offered_ends_at=T0 + timedelta(days=61, minutes=30),
        ),
        NotificationSent(
            patient_id=PATIENT,
            notification_id=_id(8),
            cause_event_id=_id(100),
            cause_event_type="AppointmentBooked",
            recipient_kind="patient",
            recipient_id=PATIENT,
            channel="sms",
            template="appointment_booked",
            sent_at=T0,
        ),
        NotificationFailed(
            patient_id=PATIENT,
            notification_id=_id(9),
            cause_event_id=_id(100),
            cause_event_type="AppointmentBooked",
            recipient_kind="clinician",
            recipient_id="clin-7",
            channel="email",
            template="appointment_booked_clinician",
            attempts=5,
            error_code="smtp_550",
            failed_at=T0,
        ),
    ]


@pytest.fixture
def events() -> list[BaseEvent]:
    return example_events()


@pytest.fixture
def booked() -> AppointmentBooked:
    event = example_events()[2]
    assert isinstance(event, AppointmentBooked)
    return event


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `example_event` runs once per event model."""
    if "example_event" in metafunc.fixturenames:
        examples = example_events()
        metafunc.parametrize("example_event", examples, ids=[type(e).__name__ for e in examples])
