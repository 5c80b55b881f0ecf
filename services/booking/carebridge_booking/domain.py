"""Pure rules of booking: visit lengths, licensure, working hours, slots, status transitions.

No I/O here. Datetimes are timezone-aware; instants are compared in UTC, working hours
are wall-clock times in the clinician's IANA time zone (zoneinfo handles DST).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from carebridge_contracts.events.common import ClinicianRole, VisitType
from carebridge_shared.refusals import Refusal

AppointmentStatus = Literal["proposed", "booked", "cancelled", "noshow", "fulfilled"]
Action = Literal["book", "reschedule", "cancel", "complete", "no_show"]

ROLE_FOR_VISIT: Mapping[VisitType, ClinicianRole] = {
    "initial_psychiatric_evaluation": "psychiatrist",
    "psychiatric_follow_up": "psychiatrist",
    "therapy_intake": "therapist",
    "therapy_session": "therapist",
}

CRISIS_MESSAGE = (
    "Self-booking is not available. A clinician will contact you for an urgent review. "
    "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline); "
    "call 911 if you are in immediate danger."
)


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VisitLengths:
    initial_evaluation: timedelta = timedelta(minutes=60)
    follow_up: timedelta = timedelta(minutes=30)
    therapy: timedelta = timedelta(minutes=53)

    def of(self, visit_type: VisitType) -> timedelta:
        if visit_type == "initial_psychiatric_evaluation":
            return self.initial_evaluation
        if visit_type == "psychiatric_follow_up":
            return self.follow_up
        return self.therapy


@dataclass(frozen=True, slots=True)
class BookingRules:
    lengths: VisitLengths = field(default_factory=VisitLengths)
    slot_step: timedelta = timedelta(minutes=30)
    horizon: timedelta = timedelta(days=60)
    max_query_range: timedelta = timedelta(days=14)
    allow_outcome_before_start: bool = False


# --- clinicians ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Local wall-clock working time on one weekday; `start < end` (no overnight shifts)."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Licence:
    state: str
    expires_on: date | None = None

    def valid_on(self, day: date) -> bool:
        return self.expires_on is None or day <= self.expires_on


WorkingHours = Mapping[int, tuple[TimeWindow, ...]]
"""Weekday (0 = Monday) to that day's working windows."""

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Clinician:
    id: str
    role: ClinicianRole
    time_zone: str
    licences: tuple[Licence, ...] = ()
    working_hours: WorkingHours = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    capacity: int = 0
    active: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local_date(self, at: datetime) -> date:
        """The clinician's calendar date at `at`; licence expiry is judged on it."""
        return at.astimezone(self.zone).date()

    def licensed_in(self, state: str, at: datetime) -> bool:
        day = self.local_date(at)
        return any(lic.state == state and lic.valid_on(day) for lic in self.licences)


def windows_overlap(windows: Sequence[TimeWindow]) -> bool:
    ordered = sorted(windows, key=lambda w: w.start)
    return any(a.end > b.start for a, b in pairwise(ordered))


# --- time intervals and slots --------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """Half-open [start, end), like the `tstzrange(..., '[)')` PostgreSQL enforces."""

    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end


def _utc(local: datetime) -> datetime:
    # A wall time inside a spring-forward gap maps (fold=0) past the gap, and an ambiguous
    # fall-back time to its first occurrence: both give real, ordered instants.
    return local.astimezone(UTC)


def working_intervals(clinician: Clinician, start: datetime, end: datetime) -> list[Interval]:
    """The clinician's working intervals (UTC) that overlap [start, end)."""
    zone = clinician.zone
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date()
    found: list[Interval] = []
    while day <= last:
        for window in clinician.working_hours.get(day.weekday(), ()):
            interval = Interval(
                _utc(datetime.combine(day, window.start, zone)),
                _utc(datetime.combine(day, window.end, zone)),
            )
            if interval.start < interval.end and interval.overlaps(Interval(start, end)):
                found.append(interval)
        day += timedelta(days=1)
    return sorted(found)


def grid_starts(window: Interval, length: timedelta, step: timedelta) -> Iterator[datetime]:
    """Slot starts in a working interval: its start plus multiples of `step`, fitting whole."""
    starts_at = window.start
    while starts_at + length <= window.end:
        yield starts_at
        starts_at += step


def free_slots(
    clinician: Clinician,
    *,
    state: str,
    length: timedelta,
    step: timedelta,
    start: datetime,
    end: datetime,
    now: datetime,
    busy: Sequence[Interval],
) -> list[Interval]:
    """Slots starting in [max(start, now), end), licensed in `state`, overlapping nothing busy."""
    lower = max(start, now)
    slots: list[Interval] = []
    if lower >= end:
        return slots
    for window in working_intervals(clinician, lower, end + length):
        for starts_at in grid_starts(window, length, step):
            if not lower <= starts_at < end:
                continue
            slot = Interval(starts_at, starts_at + length)
            if not clinician.licensed_in(state, starts_at):
                continue
            if any(slot.overlaps(b) for b in busy):
                continue
            slots.append(slot)
    return slots


SlotProblem = Literal["outside_working_hours", "not_on_slot_grid"]


def slot_problem(
    clinician: Clinician, starts_at: datetime, length: timedelta, step: timedelta
) -> SlotProblem | None:
    """Why `starts_at` is not one of the clinician's slots, or None when it is."""
    wanted = Interval(starts_at, starts_at + length)
    containing = [
        w for w in working_intervals(clinician, wanted.start, wanted.end) if w.contains(wanted)
    ]
    if not containing:
        return "outside_working_hours"
    if any((starts_at - w.start) % step == timedelta(0) for w in containing):
        return None
    return "not_on_slot_grid"


# --- refusals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientStanding:
    """What booking knows about a patient from events and its own appointments."""

    assessment_completed: bool = False
    urgent_review_required: bool = False
    initial_evaluation_fulfilled: bool = False
    therapy_intake_fulfilled_with: frozenset[str] = frozenset()
    # Therapists referral matched the patient with whose care team has not ended; None while
    # the patient was never matched (then therapy intakes are not restricted).
    matched_therapists: frozenset[str] | None = None


def urgent_review_refusal() -> Refusal:
    return Refusal(
        "urgent_review_required",
        CRISIS_MESSAGE,
        extra={"crisis_line": "988", "emergency_number": "911"},
    )


def patient_refusal(
    standing: PatientStanding, visit_type: VisitType, clinician_id: str
) -> Refusal | None:
    """Whether this patient may self-book this visit type with this clinician."""
    if standing.urgent_review_required:
        return urgent_review_refusal()
    if visit_type == "initial_psychiatric_evaluation" and not standing.assessment_completed:
        return Refusal(
            "assessment_required",
            "Complete the intake assessment before booking an initial psychiatric evaluation.",
        )
    if visit_type == "psychiatric_follow_up" and not standing.initial_evaluation_fulfilled:
        return Refusal(
            "initial_evaluation_required",
            "A follow-up needs a completed initial psychiatric evaluation.",
        )
    if visit_type == "therapy_intake" and not therapist_allowed(standing, clinician_id):
        return Refusal(
            "therapist_not_matched", "Book a therapy intake with the therapist you were matched to."
        )
    if (
        visit_type == "therapy_session"
        and clinician_id not in standing.therapy_intake_fulfilled_with
    ):
        return Refusal(
            "therapy_intake_required",
            "A therapy session needs a completed therapy intake with the same therapist.",
        )
    return None


def therapist_allowed(standing: PatientStanding, clinician_id: str) -> bool:
    """Referral matching: any therapist until a match restricts the choice to the matched ones."""
    return standing.matched_therapists is None or clinician_id in standing.matched_therapists


def offered_to(standing: PatientStanding, visit_type: VisitType, clinician_id: str) -> bool:
    """Whether slots of this clinician are worth offering to this patient for this visit type:
    therapy intakes only with a matched therapist, sessions only after an intake with them."""
    if visit_type == "therapy_intake":
        return therapist_allowed(standing, clinician_id)
    if visit_type == "therapy_session":
        return clinician_id in standing.therapy_intake_fulfilled_with
    return True


def clinician_refusal(
    clinician: Clinician, visit_type: VisitType, state: str, starts_at: datetime
) -> Refusal | None:
    """Whether the clinician may see this visit type for a patient in `state` at `starts_at`."""
    if not clinician.active:
        return Refusal("clinician_inactive", "This clinician is not taking appointments.")
    role = ROLE_FOR_VISIT[visit_type]
    if clinician.role != role:
        return Refusal(
            "clinician_role_mismatch",
            f"A {visit_type} visit needs a {role}.",
            extra={"required_role": role},
        )
    if not clinician.licensed_in(state, starts_at):
        return Refusal(
            "clinician_not_licensed_in_state",
            "The clinician holds no valid licence for the state the patient will be in "
            "on the visit date.",
            extra={"state": state},
        )
    return None


def time_refusal(starts_at: datetime, now: datetime, horizon: timedelta) -> Refusal | None:
    if starts_at < now:
        return Refusal("slot_in_past", "The requested time has already passed.")
    if starts_at > now + horizon:
        return Refusal(
            "beyond_booking_horizon",
            f"Visits can be booked at most {horizon.days} days ahead.",
        )
    return None


def slot_refusal(
    clinician: Clinician, starts_at: datetime, length: timedelta, step: timedelta
) -> Refusal | None:
    problem = slot_problem(clinician, starts_at, length, step)
    if problem == "outside_working_hours":
        return Refusal(problem, "The visit does not fit in the clinician's working hours.")
    if problem == "not_on_slot_grid":
        return Refusal(
            problem,
            f"Visits start on a {int(step.total_seconds() // 60)}-minute grid; "
            "pick a time from GET /v1/slots.",
        )
    return None


def scheduling_refusal(
    clinician: Clinician,
    visit_type: VisitType,
    state: str,
    starts_at: datetime,
    *,
    now: datetime,
    rules: BookingRules,
) -> Refusal | None:
    """Every check a booking or a reschedule must pass on the clinician's side."""
    length = rules.lengths.of(visit_type)
    return (
        clinician_refusal(clinician, visit_type, state, starts_at)
        or time_refusal(starts_at, now, rules.horizon)
        or slot_refusal(clinician, starts_at, length, rules.slot_step)
    )


# --- appointment lifecycle -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Appointment:
    id: UUID
    patient_id: str
    clinician_id: str
    clinician_role: ClinicianRole
    visit_type: VisitType
    state: str
    starts_at: datetime
    ends_at: datetime
    status: AppointmentStatus
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


TERMINAL: frozenset[AppointmentStatus] = frozenset({"cancelled", "noshow", "fulfilled"})

_TRANSITIONS: Mapping[tuple[AppointmentStatus, Action], AppointmentStatus] = {
    ("proposed", "book"): "booked",
    ("proposed", "cancel"): "cancelled",
    ("booked", "reschedule"): "booked",
    ("booked", "cancel"): "cancelled",
    ("booked", "complete"): "fulfilled",
    ("booked", "no_show"): "noshow",
}


def next_status(current: AppointmentStatus, action: Action) -> AppointmentStatus | None:
    """The status after `action`, or None when the action is not allowed from `current`."""
    return _TRANSITIONS.get((current, action))


def transition_refusal(
    current: AppointmentStatus,
    action: Action,
    *,
    starts_at: datetime,
    now: datetime,
    allow_outcome_before_start: bool = False,
) -> Refusal | None:
    if next_status(current, action) is None:
        return Refusal(
            "illegal_transition",
            f"Cannot {action.replace('_', '-')} an appointment that is {current}.",
            extra={"current_status": current, "action": action},
        )
    if action in ("complete", "no_show") and now < starts_at and not allow_outcome_before_start:
        return Refusal(
            "visit_not_started",
            "A visit can be completed or marked no-show only once it has started.",
            extra={"current_status": current},
        )
    return None


# --- earlier follow-up on worsening (measurement-based care) ----------------------------------


def next_follow_up(appointments: Sequence[Appointment], now: datetime) -> Appointment | None:
    """The patient's next booked psychiatric follow-up that has not started."""
    upcoming = [
        a
        for a in appointments
        if a.status == "booked" and a.visit_type == "psychiatric_follow_up" and a.starts_at > now
    ]
    return min(upcoming, key=lambda a: (a.starts_at, str(a.id)), default=None)


def earlier_follow_up_slot(
    clinician: Clinician,
    follow_up: Appointment,
    rules: BookingRules,
    now: datetime,
    busy: Sequence[Interval],
) -> Interval | None:
    """The first free follow-up slot of the same psychiatrist that ends before the booked
    follow-up starts: on their working hours and slot grid, licensed where the booked visit
    takes place on the slot's date, clear of `busy` (the psychiatrist's and the patient's
    booked visits). Deterministic: the earliest such slot, or None."""
    length = rules.lengths.of("psychiatric_follow_up")
    slots = free_slots(
        clinician,
        state=follow_up.state,
        length=length,
        step=rules.slot_step,
        start=now,
        end=follow_up.starts_at,
        now=now,
        busy=busy,
    )
    return next((slot for slot in slots if slot.end <= follow_up.starts_at), None)
