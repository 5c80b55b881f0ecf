"""Referral matches restrict therapy intakes, and which slots a patient is offered."""

from __future__ import annotations

import pytest

from carebridge_booking.domain import PatientStanding, offered_to, patient_refusal
from carebridge_contracts.events.common import VisitType

NEVER_MATCHED = PatientStanding()
MATCHED_T1 = PatientStanding(matched_therapists=frozenset({"t-1"}))
MATCH_ENDED = PatientStanding(matched_therapists=frozenset())
INTAKE_WITH_T2 = PatientStanding(therapy_intake_fulfilled_with=frozenset({"t-2"}))


@pytest.mark.parametrize(
    ("standing", "clinician_id", "code"),
    [
        (NEVER_MATCHED, "t-1", None),
        (MATCHED_T1, "t-1", None),
        (MATCHED_T1, "t-2", "therapist_not_matched"),
        # once matched, an ended care team leaves no therapist to take an intake
        (MATCH_ENDED, "t-1", "therapist_not_matched"),
    ],
)
def test_therapy_intake_needs_a_current_match_once_matched(
    standing: PatientStanding, clinician_id: str, code: str | None
) -> None:
    refusal = patient_refusal(standing, "therapy_intake", clinician_id)
    assert (refusal.code if refusal else None) == code


@pytest.mark.parametrize(
    ("standing", "visit_type", "clinician_id", "offered"),
    [
        (NEVER_MATCHED, "therapy_intake", "t-1", True),
        (MATCHED_T1, "therapy_intake", "t-1", True),
        (MATCHED_T1, "therapy_intake", "t-2", False),
        (MATCH_ENDED, "therapy_intake", "t-1", False),
        (INTAKE_WITH_T2, "therapy_session", "t-2", True),
        (INTAKE_WITH_T2, "therapy_session", "t-1", False),
        (MATCHED_T1, "initial_psychiatric_evaluation", "c-1", True),
        (MATCHED_T1, "psychiatric_follow_up", "c-1", True),
    ],
)
def test_offered_to(
    standing: PatientStanding, visit_type: VisitType, clinician_id: str, offered: bool
) -> None:
    assert offered_to(standing, visit_type, clinician_id) is offered
