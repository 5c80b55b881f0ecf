"""The earlier follow-up offered on worsening: same psychiatrist, before the booked follow-up,
on working hours and the slot grid, licensed where the visit is, clear of booked visits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

from carebridge_booking.domain import (
    Appointment,
    BookingRules,
    Clinician,
    Interval,
    Licence,
    TimeWindow,
    earlier_follow_up_slot,
    next_follow_up,
)

NOW = datetime(2026, 3, 2, 12, 10, tzinfo=UTC)  # a Monday
RULES = BookingRules()


def psychiatrist(licences: tuple[Licence, ...] = (Licence("NY"),)) -> Clinician:
    window = (TimeWindow(time(9), time(17)),)
    return Clinician(
        id="psy-1",
        role="psychiatrist",
        time_zone="UTC",
        licences=licences,
        working_hours={day: window for day in range(5)},
    )


def visit(starts_at: datetime, **kw: object) -> Appointment:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "patient_id": "pat-1",
        "clinician_id": "psy-1",
        "clinician_role": "psychiatrist",
        "visit_type": "psychiatric_follow_up",
        "state": "NY",
        "starts_at": starts_at,
        "ends_at": starts_at + timedelta(minutes=30),
        "status": "booked",
        **kw,
    }
    return Appointment(**values)  # type: ignore[arg-type]


def test_the_next_booked_follow_up_is_chosen() -> None:
    later = visit(NOW + timedelta(days=9))
    sooner = visit(NOW + timedelta(days=4))
    past = visit(NOW - timedelta(days=1))
    cancelled = visit(NOW + timedelta(days=1), status="cancelled")
    therapy = visit(NOW + timedelta(days=2), visit_type="therapy_session")
    assert next_follow_up([later, past, cancelled, therapy, sooner], NOW) == sooner
    assert next_follow_up([past, cancelled], NOW) is None


def test_the_earliest_free_slot_before_the_follow_up_is_offered() -> None:
    follow_up = visit(datetime(2026, 3, 6, 10, 0, tzinfo=UTC))
    slot = earlier_follow_up_slot(psychiatrist(), follow_up, RULES, NOW, [])
    assert slot == Interval(
        datetime(2026, 3, 2, 12, 30, tzinfo=UTC), datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    )


def test_busy_times_are_skipped_and_nothing_after_the_follow_up_is_offered() -> None:
    follow_up = visit(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    busy = [
        Interval(datetime(2026, 3, 2, 12, 30, tzinfo=UTC), datetime(2026, 3, 2, 13, 30, tzinfo=UTC))
    ]
    slot = earlier_follow_up_slot(psychiatrist(), follow_up, RULES, NOW, busy)
    assert slot is not None and slot.start == datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
    busy.append(Interval(slot.start, slot.end))
    assert earlier_follow_up_slot(psychiatrist(), follow_up, RULES, NOW, busy) is None


def test_no_slot_where_the_licence_has_lapsed() -> None:
    follow_up = visit(datetime(2026, 3, 6, 10, 0, tzinfo=UTC))
    lapsed = psychiatrist((Licence("NY", expires_on=date(2026, 3, 1)),))
    assert earlier_follow_up_slot(lapsed, follow_up, RULES, NOW, []) is None
    elsewhere = psychiatrist((Licence("CA"),))
    assert earlier_follow_up_slot(elsewhere, follow_up, RULES, NOW, []) is None
