"""HTTP API of the booking service: clinicians, free slots, appointments, patient eligibility.

Routes only translate: path, query, body and caller in, one use case (`clinicians`, `slots`,
`appointments`, `standing`), the answer out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError

from carebridge_booking import appointments, clinicians, domain, slots, standing
from carebridge_booking.models import (
    AppointmentList,
    AppointmentOut,
    BookRequest,
    CancelRequest,
    ClinicianBody,
    ClinicianList,
    ClinicianOut,
    ClinicianPatch,
    EligibilityOut,
    Instant,
    RescheduleRequest,
    SlotList,
    SlotOut,
)
from carebridge_booking.settings import BookingSettings
from carebridge_contracts.events.common import (
    ClinicianId,
    ClinicianRole,
    PatientId,
    StateCode,
    VisitType,
)
from carebridge_shared import audit
from carebridge_shared.auth import Principal, allow
from carebridge_shared.context import ServiceContext
from carebridge_shared.service import service_context

router = APIRouter(prefix="/v1", tags=["booking"])
router.include_router(audit.router)

Context = Annotated[ServiceContext[BookingSettings], Depends(service_context)]
# Who may call what (docs/security.md); which patients' records is decided per request below.
Directory = Annotated[Principal, Depends(allow("patient", "clinician", "coordinator"))]
Coordinator = Annotated[Principal, Depends(allow("coordinator"))]
PatientOrClinician = Annotated[Principal, Depends(allow("patient", "clinician"))]
ClinicianPath = Annotated[ClinicianId, Path(description="Opaque clinician id, e.g. psy-ny-1")]
PatientPath = Annotated[PatientId, Path(description="Opaque patient id")]


async def booking_rules(ctx: Context) -> domain.BookingRules:
    return ctx.settings.rules()


Rules = Annotated[domain.BookingRules, Depends(booking_rules)]


def _invalid(location: tuple[str, ...], reason: str) -> RequestValidationError:
    """A 422 in the shared error format, for checks that span several parameters."""
    return RequestValidationError([{"loc": location, "msg": reason, "type": "value_error"}])


def _appointment_out(appointment: domain.Appointment) -> AppointmentOut:
    return AppointmentOut.model_validate(appointment, from_attributes=True)


# --- clinicians ----------------------------------------------------------------------------


@router.get("/clinicians")
async def list_clinicians(
    ctx: Context,
    _caller: Directory,
    state: Annotated[StateCode | None, Query(description="Holding a valid licence here")] = None,
    role: ClinicianRole | None = None,
    active: bool | None = None,
) -> ClinicianList:
    found = await clinicians.list_(ctx, state=state, role=role, active=active)
    return ClinicianList(clinicians=[ClinicianOut.of(c) for c in found])


@router.get("/clinicians/{clinician_id}")
async def get_clinician(
    ctx: Context, _caller: Directory, clinician_id: ClinicianPath
) -> ClinicianOut:
    clinician = await clinicians.get(ctx, clinician_id)
    return ClinicianOut.of(clinician)


@router.put(
    "/clinicians/{clinician_id}",
    responses={201: {"description": "Created"}, 200: {"description": "Replaced"}},
)
async def put_clinician(
    ctx: Context,
    _caller: Coordinator,
    clinician_id: ClinicianPath,
    body: ClinicianBody,
    response: Response,
) -> ClinicianOut:
    clinician = body.to_domain(clinician_id)
    created = await clinicians.put(ctx, clinician)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ClinicianOut.of(clinician)


@router.patch("/clinicians/{clinician_id}")
async def patch_clinician(
    ctx: Context, _caller: Coordinator, clinician_id: ClinicianPath, patch: ClinicianPatch
) -> ClinicianOut:
    clinician = await clinicians.patch(ctx, clinician_id, patch)
    return ClinicianOut.of(clinician)


# --- slots ---------------------------------------------------------------------------------


def _query_range(
    rules: domain.BookingRules, now: datetime, from_: datetime | None, to: datetime | None
) -> tuple[datetime, datetime]:
    """from..to, by default now and the longest range allowed; 422 if it is empty or longer."""
    start = from_ or now
    end = to or start + rules.max_query_range
    if end <= start:
        raise _invalid(("query", "to"), "to must be after from")
    if end - start > rules.max_query_range:
        raise _invalid(
            ("query", "to"),
            f"the range from..to may span at most {rules.max_query_range.days} days",
        )
    return start, end


@router.get("/slots")
async def list_slots(
    ctx: Context,
    rules: Rules,
    caller: Directory,
    state: Annotated[StateCode, Query(description="Where the patient will be")],
    visit_type: VisitType,
    from_: Annotated[Instant | None, Query(alias="from")] = None,
    to: Instant | None = None,
    clinician_id: ClinicianId | None = None,
    patient_id: Annotated[
        PatientId | None,
        Query(description="Only clinicians this patient may book for this visit type"),
    ] = None,
) -> SlotList:
    """Free slots of active clinicians of the right role, licensed in `state` on the slot date.

    With `patient_id`, therapy intakes are offered only with the therapist(s) referral matched
    the patient with, and therapy sessions only with a therapist who held their intake.
    """
    now = ctx.clock.now()
    start, end = _query_range(rules, now, from_, to)
    found = await slots.free(
        ctx,
        rules,
        caller,
        state=state,
        visit_type=visit_type,
        start=start,
        end=end,
        now=now,
        clinician_id=clinician_id,
        patient_id=patient_id,
    )
    listed = [
        SlotOut(
            clinician_id=clinician,
            visit_type=visit_type,
            state=state,
            starts_at=slot.start,
            ends_at=slot.end,
        )
        for clinician, slot in found
    ]
    return SlotList(from_=start, to=end, slots=listed)


# --- appointments --------------------------------------------------------------------------


@router.post("/appointments", status_code=status.HTTP_201_CREATED)
async def book_appointment(
    ctx: Context, rules: Rules, caller: PatientOrClinician, body: BookRequest
) -> AppointmentOut:
    """A patient books for themselves; a clinician books with themselves for their patient."""
    return _appointment_out(await appointments.book(ctx, rules, body, caller))


@router.get("/appointments")
async def list_appointments(
    ctx: Context,
    caller: PatientOrClinician,
    patient_id: PatientId | None = None,
    clinician_id: ClinicianId | None = None,
    status: domain.AppointmentStatus | None = None,
) -> AppointmentList:
    """A patient's visits (for the patient or a clinician who treats them), or a clinician's
    own schedule (`clinician_id` = the caller)."""
    if patient_id is None and clinician_id is None:
        raise _invalid(("query", "patient_id"), "give patient_id or clinician_id")
    found = await appointments.list_visible(
        ctx, caller, patient_id=patient_id, clinician_id=clinician_id, status=status
    )
    return AppointmentList(appointments=[_appointment_out(a) for a in found])


@router.get("/appointments/{appointment_id}")
async def get_appointment(
    ctx: Context, caller: PatientOrClinician, appointment_id: UUID
) -> AppointmentOut:
    """For the visit's patient, its clinician, and other clinicians who treat the patient."""
    appointment = await appointments.get(ctx, caller, appointment_id)
    return _appointment_out(appointment)


@router.post("/appointments/{appointment_id}/reschedule")
async def reschedule_appointment(
    ctx: Context,
    rules: Rules,
    caller: PatientOrClinician,
    appointment_id: UUID,
    body: RescheduleRequest,
) -> AppointmentOut:
    """By the visit's patient or its clinician."""
    return _appointment_out(await appointments.reschedule(ctx, rules, appointment_id, body, caller))


@router.post("/appointments/{appointment_id}/cancel")
async def cancel_appointment(
    ctx: Context,
    rules: Rules,
    caller: PatientOrClinician,
    appointment_id: UUID,
    body: CancelRequest,
) -> AppointmentOut:
    """By the visit's patient or its clinician; `cancelled_by` names which."""
    return _appointment_out(await appointments.cancel(ctx, rules, appointment_id, body, caller))


@router.post("/appointments/{appointment_id}/complete")
async def complete_appointment(
    ctx: Context, rules: Rules, caller: PatientOrClinician, appointment_id: UUID
) -> AppointmentOut:
    """By the visit's clinician only."""
    return _appointment_out(await appointments.complete(ctx, rules, appointment_id, caller))


@router.post("/appointments/{appointment_id}/no-show")
async def no_show_appointment(
    ctx: Context, rules: Rules, caller: PatientOrClinician, appointment_id: UUID
) -> AppointmentOut:
    """By the visit's clinician only."""
    return _appointment_out(await appointments.no_show(ctx, rules, appointment_id, caller))


# --- patients ------------------------------------------------------------------------------


@router.get("/patients/{patient_id}/eligibility")
async def patient_eligibility(
    ctx: Context, caller: PatientOrClinician, patient_id: PatientPath
) -> EligibilityOut:
    """What booking has learnt from intake; polled to know the assessment was consumed. The
    read is audited (resource `eligibility`, the patient's id)."""
    found = await standing.read(ctx, caller, patient_id)
    return EligibilityOut(
        patient_id=patient_id,
        assessment_completed=found.assessment_completed,
        urgent_review_required=found.urgent_review_required,
        initial_evaluation_fulfilled=found.initial_evaluation_fulfilled,
        can_self_book_initial_evaluation=domain.patient_refusal(
            found, "initial_psychiatric_evaluation", ""
        )
        is None,
    )
