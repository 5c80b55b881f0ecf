"""Licensure, who may self-book what, and the appointment status machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from carebridge_booking.domain import (
    Action,
    AppointmentStatus,
    BookingRules,
    Clinician,
    Licence,
    PatientStanding,
    TimeWindow,
    VisitLengths,
    next_status,
    patient_refusal,
    scheduling_refusal,
    transition_refusal,
)
from carebridge_contracts.events.common import ClinicianRole, VisitType

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 1, 12, 12, tzinfo=UTC)  # Monday 07:00 in New York
MONDAY_10 = datetime(2026, 1, 12, 10, tzinfo=NY)
RULES = BookingRules()


def clinician(
    role: ClinicianRole = "psychiatrist",
    licences: tuple[Licence, ...] = (Licence("NY"),),
    active: bool = True,
    zone: str = "America/New_York",
) -> Clinician:
    hours = (TimeWindow(time(9), time(17)),)
    return Clinician(
        id="c-1",
        role=role,
        time_zone=zone,
        licences=licences,
        working_hours={d: hours for d in range(5)},
        active=active,
    )


@pytest.mark.parametrize(
    ("licences", "state", "at", "licensed"),
    [
        ((Licence("NY"),), "NY", MONDAY_10, True),
        ((Licence("NY"),), "NJ", MONDAY_10, False),
        ((Licence("NY"), Licence("NJ")), "NJ", MONDAY_10, True),
        ((Licence("NY", date(2026, 1, 12)),), "NY", MONDAY_10, True),  # expires end of that day
        ((Licence("NY", date(2026, 1, 11)),), "NY", MONDAY_10, False),
        ((Licence("NY", date(2026, 1, 11)), Licence("NJ")), "NY", MONDAY_10, False),
        # the expiry date is the clinician's local date: 23:30 in New York is 04:30Z next day
        ((Licence("NY", date(2026, 1, 12)),), "NY", datetime(2026, 1, 13, 4, 30, tzinfo=UTC), True),
        ((), "NY", MONDAY_10, False),
    ],
)
def test_licensed_in(
    licences: tuple[Licence, ...], state: str, at: datetime, licensed: bool
) -> None:
    assert clinician(licences=licences).licensed_in(state, at) is licensed


@pytest.mark.parametrize(
    ("who", "visit_type", "state", "starts_at", "code"),
    [
        (clinician(), "initial_psychiatric_evaluation", "NY", MONDAY_10, None),
        (clinician(), "psychiatric_follow_up", "NY", MONDAY_10, None),
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "CA",
            MONDAY_10,
            "clinician_not_licensed_in_state",
        ),
        (
            clinician(licences=(Licence("NY", date(2026, 1, 11)),)),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10,
            "clinician_not_licensed_in_state",
        ),
        (
            clinician(active=False),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10,
            "clinician_inactive",
        ),
        (
            clinician(role="therapist"),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10,
            "clinician_role_mismatch",
        ),
        (clinician(), "therapy_intake", "NY", MONDAY_10, "clinician_role_mismatch"),
        (clinician(role="therapist"), "therapy_session", "NY", MONDAY_10, None),
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "NY",
            NOW - timedelta(hours=1),
            "slot_in_past",
        ),
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10 + timedelta(days=70),
            "beyond_booking_horizon",
        ),
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10 + timedelta(hours=7),
            "outside_working_hours",
        ),
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "NY",
            MONDAY_10 + timedelta(minutes=15),
            "not_on_slot_grid",
        ),
        # the licence is judged before the time: a visit nobody may give is refused as such
        (
            clinician(),
            "initial_psychiatric_evaluation",
            "CA",
            NOW - timedelta(hours=1),
            "clinician_not_licensed_in_state",
        ),
    ],
)
def test_scheduling_refusal(
    who: Clinician, visit_type: VisitType, state: str, starts_at: datetime, code: str | None
) -> None:
    refusal = scheduling_refusal(who, visit_type, state, starts_at, now=NOW, rules=RULES)
    assert (refusal.code if refusal else None) == code
    if refusal is not None:
        assert refusal.status == 409


def test_visit_length_decides_whether_the_last_slot_fits() -> None:
    late = datetime(2026, 1, 12, 16, 30, tzinfo=NY)
    who = clinician()
    assert (
        scheduling_refusal(who, "psychiatric_follow_up", "NY", late, now=NOW, rules=RULES) is None
    )
    refusal = scheduling_refusal(
        who, "initial_psychiatric_evaluation", "NY", late, now=NOW, rules=RULES
    )
    assert refusal is not None and refusal.code == "outside_working_hours"


def test_visit_lengths_default_and_configurable() -> None:
    assert VisitLengths().of("initial_psychiatric_evaluation") == timedelta(minutes=60)
    assert VisitLengths().of("psychiatric_follow_up") == timedelta(minutes=30)
    assert VisitLengths().of("therapy_session") == timedelta(minutes=53)
    assert VisitLengths(follow_up=timedelta(minutes=45)).of("psychiatric_follow_up") == timedelta(
        minutes=45
    )


ASSESSED = PatientStanding(assessment_completed=True)


@pytest.mark.parametrize(
    ("standing", "visit_type", "clinician_id", "code"),
    [
        (ASSESSED, "initial_psychiatric_evaluation", "c-1", None),
        (PatientStanding(), "initial_psychiatric_evaluation", "c-1", "assessment_required"),
        (
            PatientStanding(assessment_completed=True, urgent_review_required=True),
            "initial_psychiatric_evaluation",
            "c-1",
            "urgent_review_required",
        ),
        # imminent risk blocks every kind of self-booking
        (
            PatientStanding(urgent_review_required=True),
            "therapy_intake",
            "t-1",
            "urgent_review_required",
        ),
        (ASSESSED, "psychiatric_follow_up", "c-1", "initial_evaluation_required"),
        (
            PatientStanding(assessment_completed=True, initial_evaluation_fulfilled=True),
            "psychiatric_follow_up",
            "c-2",
            None,
        ),
        (PatientStanding(), "therapy_intake", "t-1", None),
        (
            PatientStanding(matched_therapists=frozenset({"t-2"})),
            "therapy_intake",
            "t-1",
            "therapist_not_matched",
        ),
        (PatientStanding(matched_therapists=frozenset({"t-1"})), "therapy_intake", "t-1", None),
        (PatientStanding(), "therapy_session", "t-1", "therapy_intake_required"),
        (
            PatientStanding(therapy_intake_fulfilled_with=frozenset({"t-2"})),
            "therapy_session",
            "t-1",
            "therapy_intake_required",
        ),
        (
            PatientStanding(therapy_intake_fulfilled_with=frozenset({"t-1"})),
            "therapy_session",
            "t-1",
            None,
        ),
    ],
)
def test_patient_refusal(
    standing: PatientStanding, visit_type: VisitType, clinician_id: str, code: str | None
) -> None:
    refusal = patient_refusal(standing, visit_type, clinician_id)
    assert (refusal.code if refusal else None) == code


def test_urgent_review_refusal_points_to_988_and_911() -> None:
    refusal = patient_refusal(
        PatientStanding(urgent_review_required=True), "initial_psychiatric_evaluation", "c-1"
    )
    assert refusal is not None
    assert "call or text 988" in refusal.message
    assert "911" in refusal.message
    assert "urgent review" in refusal.message


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        ("proposed", "book", "booked"),
        ("proposed", "cancel", "cancelled"),
        ("proposed", "complete", None),
        ("booked", "reschedule", "booked"),
        ("booked", "cancel", "cancelled"),
        ("booked", "complete", "fulfilled"),
        ("booked", "no_show", "noshow"),
        ("booked", "book", None),
        *[
            (terminal, action, None)
            for terminal in ("cancelled", "noshow", "fulfilled")
            for action in ("book", "reschedule", "cancel", "complete", "no_show")
        ],
    ],
)
def test_next_status(
    current: AppointmentStatus, action: Action, expected: AppointmentStatus | None
) -> None:
    assert next_status(current, action) == expected


@pytest.mark.parametrize(
    ("current", "action", "starts_at", "allow_early", "code"),
    [
        ("fulfilled", "cancel", NOW, False, "illegal_transition"),
        ("booked", "complete", NOW + timedelta(minutes=1), False, "visit_not_started"),
        ("booked", "no_show", NOW + timedelta(minutes=1), False, "visit_not_started"),
        ("booked", "complete", NOW + timedelta(minutes=1), True, None),
        ("booked", "complete", NOW, False, None),
        ("booked", "no_show", NOW - timedelta(hours=1), False, None),
        ("booked", "cancel", NOW + timedelta(days=1), False, None),
        ("booked", "cancel", NOW - timedelta(days=1), False, None),
    ],
)
def test_transition_refusal(
    current: AppointmentStatus,
    action: Action,
    starts_at: datetime,
    allow_early: bool,
    code: str | None,
) -> None:
    refusal = transition_refusal(
        current, action, starts_at=starts_at, now=NOW, allow_outcome_before_start=allow_early
    )
    assert (refusal.code if refusal else None) == code
    if refusal is not None and code == "illegal_transition":
        assert refusal.extra["current_status"] == current
