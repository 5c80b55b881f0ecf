"""Request and response bodies of the booking API, and their mapping to domain objects."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Self
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from carebridge_booking import domain
from carebridge_booking.domain import WEEKDAYS, Weekday
from carebridge_contracts.events.booking import CancellationReason, CancelledBy
from carebridge_contracts.events.common import (
    ClinicianId,
    ClinicianRole,
    Modality,
    PatientId,
    StateCode,
    UtcDatetime,
    VisitType,
)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Far enough from datetime's limits that adding a visit length or a search range cannot overflow
# (a request for 9999-12-31 was a 500 before).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _in_calendar(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be a time between the years 1900 and 9000")
    return value


Instant = Annotated[UtcDatetime, AfterValidator(_in_calendar)]
"""A point in time a request may name: timezone-aware, in UTC, years 1900 to 9000."""


# --- clinicians ----------------------------------------------------------------------------


class WorkingWindow(Request):
    """Local wall-clock times in the clinician's time zone, e.g. {"start": "09:00", "end": "17:00"}."""

    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("working hours are local times without an offset")
        if self.end <= self.start:
            raise ValueError("end must be after start (overnight windows are not supported)")
        return self

    @field_serializer("start", "end")
    def _hh_mm(self, value: time) -> str:
        return value.isoformat(timespec="minutes")


class LicenceBody(Request):
    state: StateCode
    expires_on: date | None = None


class ClinicianBody(Request):
    """A clinician as PUT stores it (the id is in the path)."""

    role: ClinicianRole
    time_zone: Annotated[str, Field(min_length=1, max_length=64)]
    licences: list[LicenceBody] = []
    working_hours: dict[Weekday, list[WorkingWindow]] = {}
    modalities: list[Modality] = []
    capacity: Annotated[int, Field(ge=0, le=10_000)] = 0
    active: bool = True

    @field_validator("time_zone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone name") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        states = [lic.state for lic in self.licences]
        if len(set(states)) != len(states):
            raise ValueError("one licence per state")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError("modalities must not repeat")
        for day, windows in self.working_hours.items():
            if domain.windows_overlap([domain.TimeWindow(w.start, w.end) for w in windows]):
                raise ValueError(f"working hours on {day} overlap")
        return self

    def to_domain(self, clinician_id: str) -> domain.Clinician:
        return domain.Clinician(
            id=clinician_id,
            role=self.role,
            time_zone=self.time_zone,
            licences=tuple(domain.Licence(lic.state, lic.expires_on) for lic in self.licences),
            working_hours={
                WEEKDAYS.index(day): tuple(domain.TimeWindow(w.start, w.end) for w in windows)
                for day, windows in self.working_hours.items()
                if windows
            },
            modalities=tuple(self.modalities),
            capacity=self.capacity,
            active=self.active,
        )

    @classmethod
    def from_domain(cls, clinician: domain.Clinician) -> Self:
        return cls.model_validate(
            {
                "role": clinician.role,
                "time_zone": clinician.time_zone,
                "licences": [
                    {"state": lic.state, "expires_on": lic.expires_on} for lic in clinician.licences
                ],
                "working_hours": {
                    WEEKDAYS[weekday]: [{"start": w.start, "end": w.end} for w in windows]
                    for weekday, windows in sorted(clinician.working_hours.items())
                },
                "modalities": list(clinician.modalities),
                "capacity": clinician.capacity,
                "active": clinician.active,
            }
        )


class ClinicianPatch(Request):
    """Fields to change; anything left out keeps its value."""

    role: ClinicianRole | None = None
    time_zone: str | None = None
    licences: list[LicenceBody] | None = None
    working_hours: dict[Weekday, list[WorkingWindow]] | None = None
    modalities: list[Modality] | None = None
    capacity: Annotated[int, Field(ge=0, le=10_000)] | None = None
    active: bool | None = None


class SeedClinician(ClinicianBody):
    id: ClinicianId


class SeedFile(Request):
    clinicians: list[SeedClinician]


class ClinicianOut(ClinicianBody):
    id: ClinicianId

    @classmethod
    def of(cls, clinician: domain.Clinician) -> ClinicianOut:
        body = ClinicianBody.from_domain(clinician)
        return cls.model_validate({"id": clinician.id, **body.model_dump()})


class ClinicianList(BaseModel):
    clinicians: list[ClinicianOut]


# --- slots ---------------------------------------------------------------------------------


class SlotOut(BaseModel):
    clinician_id: ClinicianId
    visit_type: VisitType
    state: StateCode
    starts_at: datetime
    ends_at: datetime


class SlotList(BaseModel):
    from_: Annotated[datetime, Field(serialization_alias="from")]
    to: datetime
    slots: list[SlotOut]


# --- appointments --------------------------------------------------------------------------


class BookRequest(Request):
    patient_id: PatientId
    clinician_id: ClinicianId
    visit_type: VisitType
    starts_at: Instant
    state: StateCode = Field(description="Where the patient will be during the visit.")


class RescheduleRequest(Request):
    starts_at: Instant
    state: StateCode = Field(description="Where the patient will be during the visit.")


class CancelRequest(Request):
    cancelled_by: CancelledBy
    reason_code: CancellationReason


class AppointmentOut(BaseModel):
    id: UUID
    patient_id: PatientId
    clinician_id: ClinicianId
    clinician_role: ClinicianRole
    visit_type: VisitType
    state: StateCode
    starts_at: datetime
    ends_at: datetime
    status: domain.AppointmentStatus
    cancelled_by: CancelledBy | None = None
    cancel_reason: CancellationReason | None = None
    created_at: datetime
    updated_at: datetime


class AppointmentList(BaseModel):
    appointments: list[AppointmentOut]


class EligibilityOut(BaseModel):
    patient_id: PatientId
    assessment_completed: bool
    urgent_review_required: bool
    initial_evaluation_fulfilled: bool
    can_self_book_initial_evaluation: bool
