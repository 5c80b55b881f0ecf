"""Booking events (topic: appointments). Statuses follow FHIR Appointment."""

from __future__ import annotations

from typing import ClassVar, Literal, Self
from uuid import UUID

from pydantic import model_validator

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import (
    ClinicianId,
    ClinicianRole,
    StateCode,
    UtcDatetime,
    VisitType,
    check_interval,
)
from carebridge_contracts.topics import Topic

__all__ = [
    "AppointmentBooked",
    "AppointmentCancelled",
    "AppointmentCompleted",
    "AppointmentNoShow",
    "AppointmentRescheduled",
]  # the events; the registry finds them by `topic`

CancelledBy = Literal["patient", "clinician", "system"]
CancellationReason = Literal[
    "patient_request",
    "clinician_unavailable",
    "licence_invalid",
    "safety_escalation",
    "other",
]


class AppointmentBooked(BaseEvent):
    """A visit was booked (FHIR status "booked") with a clinician licensed in `state`."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    clinician_role: ClinicianRole
    visit_type: VisitType
    state: StateCode
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    status: Literal["booked"] = "booked"

    @model_validator(mode="after")
    def _interval(self) -> Self:
        check_interval(self.starts_at, self.ends_at)
        return self


class AppointmentRescheduled(BaseEvent):
    """A booked visit moved to a new time."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    visit_type: VisitType
    previous_starts_at: UtcDatetime
    starts_at: UtcDatetime
    ends_at: UtcDatetime
    # Where the patient will be at the new time; the licence was checked for it (optional: v1).
    state: StateCode | None = None

    @model_validator(mode="after")
    def _interval(self) -> Self:
        check_interval(self.starts_at, self.ends_at)
        return self


class AppointmentCancelled(BaseEvent):
    """A booked visit was cancelled; no reminders follow."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    visit_type: VisitType
    starts_at: UtcDatetime
    cancelled_by: CancelledBy
    reason_code: CancellationReason


class AppointmentCompleted(BaseEvent):
    """A visit took place (FHIR status "fulfilled")."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    visit_type: VisitType
    starts_at: UtcDatetime
    ends_at: UtcDatetime

    @model_validator(mode="after")
    def _interval(self) -> Self:
        check_interval(self.starts_at, self.ends_at)
        return self


class AppointmentNoShow(BaseEvent):
    """The patient did not attend (FHIR status "noshow")."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    visit_type: VisitType
    starts_at: UtcDatetime
