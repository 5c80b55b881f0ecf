"""Pure rules: reminder schedule, plans per event, channels, retries, queue order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
    SafetyRiskFlagged,
)
from carebridge_notification.domain import planning, retry, routing
from carebridge_notification.domain.retry import GiveUp, RetryAt
from carebridge_notification.domain.routing import ContactInfo, EmailRoute, Undeliverable

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
APPOINTMENT = uuid.UUID("00000000-0000-0000-0000-0000000000a1")


def booked(starts_at: datetime) -> AppointmentBooked:
    return AppointmentBooked(
        patient_id="p-1",
        appointment_id=APPOINTMENT,
        clinician_id="c-1",
        clinician_role="psychiatrist",
        visit_type="initial_psychiatric_evaluation",
        state="NY",
        starts_at=starts_at,
        ends_at=starts_at + H,
    )


@pytest.mark.parametrize(
    ("starts_in", "offsets", "expected_due_in"),
    [
        (48 * H, [1440, 60], [24 * H, 47 * H]),
        (48 * H, [60, 1440], [24 * H, 47 * H]),  # order of the setting does not matter
        (48 * H, [60, 60], [47 * H]),  # duplicates collapse
        (10 * H, [1440, 60], [9 * H]),  # the 24 h reminder is already past: skipped
        (H, [1440, 60], [timedelta(0)]),  # due exactly now: kept
        (30 * timedelta(minutes=1), [1440, 60], []),  # both past
        (-H, [1440, 60], []),  # the visit itself is past
        (48 * H, [], []),
        (48 * H, [2880, 1440, 60, 15], [0 * H, 24 * H, 47 * H, 47 * H + timedelta(minutes=45)]),
    ],
)
def test_reminder_schedule(
    starts_in: timedelta, offsets: list[int], expected_due_in: list[timedelta]
) -> None:
    schedule = planning.reminder_schedule(NOW + starts_in, offsets, NOW)
    assert [r.due_at - NOW for r in schedule] == expected_due_in
    assert all(NOW + starts_in - r.due_at == timedelta(minutes=r.offset_minutes) for r in schedule)


def test_booking_confirms_to_both_and_schedules_patient_reminders() -> None:
    plan = planning.plan_booked(booked(NOW + 48 * H), NOW, [1440, 60])
    assert not plan.cancel_pending
    rows = [
        (d.recipient_kind, d.recipient_id, d.template, d.kind, d.due_at) for d in plan.deliveries
    ]
    assert rows == [
        ("patient", "p-1", "appointment_confirmation_patient", "confirmation", NOW),
        ("clinician", "c-1", "appointment_confirmation_clinician", "confirmation", NOW),
        ("patient", "p-1", "appointment_reminder_1440m", "reminder", NOW + 24 * H),
        ("patient", "p-1", "appointment_reminder_60m", "reminder", NOW + 47 * H),
    ]
    assert {d.priority for d in plan.deliveries} == {planning.PRIORITY_NORMAL}
    # Each (recipient, template) is distinct, so the unique key holds one row per message.
    assert len({(d.recipient_id, d.template) for d in plan.deliveries}) == len(plan.deliveries)


def test_booking_shortly_before_the_visit_skips_past_reminders() -> None:
    plan = planning.plan_booked(booked(NOW + 2 * H), NOW, [1440, 60])
    assert [d.template for d in plan.deliveries if d.kind == "reminder"] == [
        "appointment_reminder_60m"
    ]


def test_reschedule_moves_the_reminders() -> None:
    event = AppointmentRescheduled(
        patient_id="p-1",
        appointment_id=APPOINTMENT,
        clinician_id="c-1",
        visit_type="psychiatric_follow_up",
        previous_starts_at=NOW + 48 * H,
        starts_at=NOW + 72 * H,
        ends_at=NOW + 72 * H + timedelta(minutes=30),
    )
    plan = planning.plan_rescheduled(event, NOW, [1440, 60])
    assert plan.cancel_pending  # the old time's reminders go
    reminders = [d.due_at for d in plan.deliveries if d.kind == "reminder"]
    assert reminders == [NOW + 48 * H, NOW + 71 * H]  # the new time's reminders come
    notices = {(d.recipient_kind, d.template) for d in plan.deliveries if d.kind == "notice"}
    assert notices == {
        ("patient", "appointment_rescheduled_patient"),
        ("clinician", "appointment_rescheduled_clinician"),
    }


def test_cancel_cancels_and_schedules_nothing() -> None:
    event = AppointmentCancelled(
        patient_id="p-1",
        appointment_id=APPOINTMENT,
        clinician_id="c-1",
        visit_type="therapy_session",
        starts_at=NOW + 48 * H,
        cancelled_by="patient",
        reason_code="patient_request",
    )
    plan = planning.plan_cancelled(event, NOW)
    assert plan.cancel_pending
    assert [d.kind for d in plan.deliveries] == ["notice", "notice"]
    assert all(d.due_at == NOW for d in plan.deliveries)


def test_a_closed_visit_cancels_what_is_pending() -> None:
    assert planning.plan_visit_closed() == planning.Plan((), cancel_pending=True)


def test_safety_alert_is_urgent_and_goes_to_on_call() -> None:
    event = SafetyRiskFlagged(
        patient_id="p-1",
        assessment_id=uuid.uuid4(),
        state="NY",
        reasons=["cssrs_q4"],
        imminent=True,
        flagged_at=NOW,
    )
    [alert] = planning.plan_safety_alert(event, "on-call", NOW).deliveries
    assert (alert.recipient_kind, alert.recipient_id, alert.kind) == (
        "clinician",
        "on-call",
        "alert",
    )
    assert alert.priority == planning.PRIORITY_URGENT < planning.PRIORITY_NORMAL
    assert alert.params == {"assessment_id": str(event.assessment_id)}


def test_queue_order_is_urgent_first_then_oldest_due() -> None:
    queue = [
        ("normal-old", planning.PRIORITY_NORMAL, NOW - 2 * H),
        ("normal-new", planning.PRIORITY_NORMAL, NOW - H),
        ("urgent-newest", planning.PRIORITY_URGENT, NOW),
        ("urgent-old", planning.PRIORITY_URGENT, NOW - H),
    ]
    ordered = sorted(queue, key=lambda item: planning.dispatch_order(item[1], item[2]))
    assert [name for name, _, _ in ordered] == [
        "urgent-old",
        "urgent-newest",
        "normal-old",
        "normal-new",
    ]


@pytest.mark.parametrize(
    ("contact", "planned", "routed"),
    [
        (None, "email", Undeliverable("no_contact")),
        (ContactInfo(None, None, "email"), "email", Undeliverable("no_contact")),
        (ContactInfo("a@x.test", None, "email"), "email", EmailRoute("a@x.test")),
        (ContactInfo("a@x.test", "+15550100", "sms"), "email", EmailRoute("a@x.test")),
        (ContactInfo(None, "+15550100", "sms"), "sms", Undeliverable("channel_unsupported")),
        (ContactInfo(None, "+15550100", "email"), "email", Undeliverable("channel_unsupported")),
    ],
)
def test_channels(
    contact: ContactInfo | None, planned: str, routed: EmailRoute | Undeliverable
) -> None:
    assert routing.planned_channel(contact) == planned
    assert routing.route(contact) == routed


POLICY = retry.RetryPolicy(5, timedelta(seconds=2), timedelta(seconds=10))


@pytest.mark.parametrize(
    ("attempts", "code", "expected"),
    [
        (1, "smtp_451", RetryAt(NOW + timedelta(seconds=2))),
        (2, "smtp_451", RetryAt(NOW + timedelta(seconds=4))),
        (3, "smtp_unreachable", RetryAt(NOW + timedelta(seconds=8))),
        (4, "smtp_timeout", RetryAt(NOW + timedelta(seconds=10))),  # capped
        (5, "smtp_451", GiveUp()),  # max attempts reached
        (1, "smtp_550", GiveUp()),  # permanent: no retry
    ],
)
def test_after_failure(attempts: int, code: str, expected: RetryAt | GiveUp) -> None:
    assert retry.after_failure(attempts, code, POLICY, NOW) == expected


def test_reminder_template_round_trip() -> None:
    assert planning.reminder_offset(planning.reminder_template(1440)) == 1440
    assert planning.reminder_offset("appointment_confirmation_patient") is None
    assert planning.reminder_offset("appointment_reminder_xm") is None
