"""Use cases of appointments: booking, rescheduling and status changes (access, rules, SQL,
outbox event and audit row in one transaction), and reading them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from carebridge_booking import domain, store
from carebridge_booking.access import treats_on
from carebridge_booking.models import BookRequest, CancelRequest, RescheduleRequest
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    BaseEvent,
)
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, forbidden, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import Refused, check, not_found, refuse

log = get_logger(__name__)


def _second_initial_evaluation(exc: asyncpg.UniqueViolationError) -> Exception:
    if exc.constraint_name != store.ONE_INITIAL_EVALUATION:
        return exc
    return refuse(
        "initial_evaluation_already_booked",
        "The patient already has an initial psychiatric evaluation booked; reschedule it instead.",
    )


def _overlap_refusal(exc: asyncpg.ExclusionViolationError) -> Refused:
    if exc.constraint_name == store.PATIENT_OVERLAP:
        return refuse(
            "patient_double_booked", "The patient already has a visit booked at that time."
        )
    return refuse("slot_taken", "That slot was just taken; pick another one from GET /v1/slots.")


# Who may change a visit besides its clinician: its patient may move or cancel it, but only
# the clinician records how it went.
PATIENT_ACTIONS: frozenset[domain.Action] = frozenset({"reschedule", "cancel"})
AUDIT_ACTIONS: dict[domain.Action, audit.Action] = {
    "book": "create",
    "reschedule": "reschedule",
    "cancel": "cancel",
    "complete": "complete",
    "no_show": "no_show",
}


async def may_book(conn: Connection, caller: Principal, request: BookRequest) -> None:
    """A patient books for themselves; a clinician books with themselves, for a patient they
    treat now (a visit that is not cancelled, an active therapist match)."""
    target = Target("appointment", None, request.patient_id)
    if caller.role == "clinician" and caller.sub != request.clinician_id:
        raise forbidden(
            "not_self", "A clinician books visits with themselves only.", caller, target
        )
    await require_patient_access(caller, request.patient_id, treats_on(conn), target=target)


def may_change(caller: Principal, appointment: domain.Appointment, action: domain.Action) -> None:
    """The visit's clinician may do anything to it; its patient may reschedule or cancel it."""
    target = Target("appointment", str(appointment.id), appointment.patient_id)
    if caller.role == "clinician" and caller.sub == appointment.clinician_id:
        return
    if caller.role == "patient" and caller.sub == appointment.patient_id:
        if action in PATIENT_ACTIONS:
            return
        raise forbidden(
            "clinician_only", "Only the visit's clinician records how it went.", caller, target
        )
    if caller.role == "patient":
        raise forbidden(
            "not_own_record", "A patient may only reach their own records.", caller, target
        )
    raise forbidden(
        "not_appointment_clinician", "Only the visit's own clinician may change it.", caller, target
    )


async def _audit(
    conn: Connection, caller: Principal, action: audit.Action, appointment: domain.Appointment
) -> None:
    await audit.record(
        conn, caller, action, "appointment", str(appointment.id), appointment.patient_id
    )


async def book(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    request: BookRequest,
    caller: Principal,
) -> domain.Appointment:
    now = ctx.clock.now()
    length = rules.lengths.of(request.visit_type)
    async with ctx.pool.acquire() as conn:
        try:
            async with conn.transaction():
                await may_book(conn, caller, request)
                clinician = await store.get_clinician(conn, request.clinician_id, for_share=True)
                if clinician is None:
                    raise not_found("clinician")
                standing = await store.patient_standing(conn, request.patient_id)
                refusal = domain.patient_refusal(
                    standing, request.visit_type, clinician.id
                ) or domain.scheduling_refusal(
                    clinician,
                    request.visit_type,
                    request.state,
                    request.starts_at,
                    now=now,
                    rules=rules,
                )
                if refusal is not None:
                    raise Refused(refusal)
                appointment = await store.insert_appointment(
                    conn, _new_appointment(request, clinician, length)
                )
                await ctx.outbox.add(conn, _booked(appointment))
                await _audit(conn, caller, "create", appointment)
        except asyncpg.ExclusionViolationError as exc:
            raise _overlap_refusal(exc) from None
        except asyncpg.UniqueViolationError as exc:
            raise _second_initial_evaluation(exc) from None
    log.info(
        "appointment_booked",
        appointment_id=str(appointment.id),
        clinician_id=appointment.clinician_id,
        visit_type=appointment.visit_type,
    )
    return appointment


def _new_appointment(
    request: BookRequest, clinician: domain.Clinician, length: timedelta
) -> domain.Appointment:
    return domain.Appointment(
        id=uuid4(),
        patient_id=request.patient_id,
        clinician_id=clinician.id,
        clinician_role=clinician.role,
        visit_type=request.visit_type,
        state=request.state,
        starts_at=request.starts_at,
        ends_at=request.starts_at + length,
        status="booked",
    )


def _booked(appointment: domain.Appointment) -> AppointmentBooked:
    return AppointmentBooked(
        patient_id=appointment.patient_id,
        appointment_id=appointment.id,
        clinician_id=appointment.clinician_id,
        clinician_role=appointment.clinician_role,
        visit_type=appointment.visit_type,
        state=appointment.state,
        starts_at=appointment.starts_at,
        ends_at=appointment.ends_at,
    )


def _rescheduled(previous_starts_at: datetime, moved: domain.Appointment) -> AppointmentRescheduled:
    return AppointmentRescheduled(
        patient_id=moved.patient_id,
        appointment_id=moved.id,
        clinician_id=moved.clinician_id,
        visit_type=moved.visit_type,
        previous_starts_at=previous_starts_at,
        starts_at=moved.starts_at,
        ends_at=moved.ends_at,
        state=moved.state,
    )


async def reschedule(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    appointment_id: UUID,
    request: RescheduleRequest,
    caller: Principal,
) -> domain.Appointment:
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn:
        try:
            async with conn.transaction():
                current = await _locked(conn, appointment_id)
                may_change(caller, current, "reschedule")
                check(
                    domain.transition_refusal(
                        current.status, "reschedule", starts_at=current.starts_at, now=now
                    )
                )
                if request.starts_at == current.starts_at and request.state == current.state:
                    return current  # a retried request: nothing moves, nothing is emitted
                clinician = await store.get_clinician(conn, current.clinician_id, for_share=True)
                if clinician is None:  # pragma: no cover - a foreign key keeps it
                    raise not_found("clinician")
                check(
                    domain.scheduling_refusal(
                        clinician,
                        current.visit_type,
                        request.state,
                        request.starts_at,
                        now=now,
                        rules=rules,
                    )
                )
                moved = await store.update_appointment(
                    conn,
                    current.id,
                    status="booked",
                    state=request.state,
                    starts_at=request.starts_at,
                    ends_at=request.starts_at + rules.lengths.of(current.visit_type),
                )
                await ctx.outbox.add(conn, _rescheduled(current.starts_at, moved))
                await _audit(conn, caller, "reschedule", moved)
        except asyncpg.ExclusionViolationError as exc:
            raise _overlap_refusal(exc) from None
    log.info("appointment_rescheduled", appointment_id=str(moved.id))
    return moved


async def cancel(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    appointment_id: UUID,
    request: CancelRequest,
    caller: Principal,
) -> domain.Appointment:
    if request.cancelled_by != caller.role:
        raise forbidden(
            "cancelled_by_not_caller",
            f"cancelled_by must name the caller ({caller.role}).",
            caller,
            Target("appointment", str(appointment_id)),
        )

    async def apply(conn: Connection, current: domain.Appointment) -> domain.Appointment:
        return await store.update_appointment(
            conn,
            current.id,
            status="cancelled",
            cancelled_by=request.cancelled_by,
            cancel_reason=request.reason_code,
        )

    def event(a: domain.Appointment) -> BaseEvent:
        return AppointmentCancelled(
            patient_id=a.patient_id,
            appointment_id=a.id,
            clinician_id=a.clinician_id,
            visit_type=a.visit_type,
            starts_at=a.starts_at,
            cancelled_by=request.cancelled_by,
            reason_code=request.reason_code,
        )

    return await _transition(ctx, rules, appointment_id, "cancel", apply, event, caller)


async def complete(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    appointment_id: UUID,
    caller: Principal,
) -> domain.Appointment:
    async def apply(conn: Connection, current: domain.Appointment) -> domain.Appointment:
        return await store.update_appointment(conn, current.id, status="fulfilled")

    def event(a: domain.Appointment) -> BaseEvent:
        return AppointmentCompleted(
            patient_id=a.patient_id,
            appointment_id=a.id,
            clinician_id=a.clinician_id,
            visit_type=a.visit_type,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
        )

    return await _transition(ctx, rules, appointment_id, "complete", apply, event, caller)


async def no_show(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    appointment_id: UUID,
    caller: Principal,
) -> domain.Appointment:
    async def apply(conn: Connection, current: domain.Appointment) -> domain.Appointment:
        return await store.update_appointment(conn, current.id, status="noshow")

    def event(a: domain.Appointment) -> BaseEvent:
        return AppointmentNoShow(
            patient_id=a.patient_id,
            appointment_id=a.id,
            clinician_id=a.clinician_id,
            visit_type=a.visit_type,
            starts_at=a.starts_at,
        )

    return await _transition(ctx, rules, appointment_id, "no_show", apply, event, caller)


async def _transition(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    appointment_id: UUID,
    action: domain.Action,
    apply: Callable[[Connection, domain.Appointment], Awaitable[domain.Appointment]],
    event: Callable[[domain.Appointment], BaseEvent],
    caller: Principal,
) -> domain.Appointment:
    now: datetime = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await _locked(conn, appointment_id)
        may_change(caller, current, action)
        check(
            domain.transition_refusal(
                current.status,
                action,
                starts_at=current.starts_at,
                now=now,
                allow_outcome_before_start=rules.allow_outcome_before_start,
            )
        )
        changed = await apply(conn, current)
        await ctx.outbox.add(conn, event(changed))
        await _audit(conn, caller, AUDIT_ACTIONS[action], changed)
    log.info(
        "appointment_status_changed",
        appointment_id=str(changed.id),
        action=action,
        status=changed.status,
    )
    return changed


async def _locked(conn: Connection, appointment_id: UUID) -> domain.Appointment:
    appointment = await store.get_appointment(conn, appointment_id, for_update=True)
    if appointment is None:
        raise not_found("appointment")
    return appointment


async def list_visible(
    ctx: ServiceContext[BookingSettings],
    caller: Principal,
    *,
    patient_id: str | None,
    clinician_id: str | None,
    status: domain.AppointmentStatus | None,
) -> list[domain.Appointment]:
    """A patient's visits (for the patient or a clinician who treats them), or a clinician's
    own schedule (`clinician_id` = the caller); each read audited."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if patient_id is not None:
            await require_patient_access(
                caller,
                patient_id,
                treats_on(conn),
                target=Target("appointments", None, patient_id),
            )
        elif caller.role != "clinician" or caller.sub != clinician_id:
            raise forbidden(
                "not_self",
                "Only the clinician themselves may list their schedule.",
                caller,
                Target("appointments", clinician_id),
            )
        found = await store.list_appointments(
            conn, patient_id=patient_id, clinician_id=clinician_id, status=status
        )
        await audit.record_many(
            conn,
            caller,
            "read",
            [audit.Access("appointment", str(a.id), a.patient_id) for a in found],
        )
    return found


async def get(
    ctx: ServiceContext[BookingSettings], caller: Principal, appointment_id: UUID
) -> domain.Appointment:
    """For the visit's patient, its clinician, and other clinicians who treat the patient."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        appointment = await store.get_appointment(conn, appointment_id)
        if appointment is None:
            raise not_found("appointment")
        if caller.role != "clinician" or caller.sub != appointment.clinician_id:
            await require_patient_access(
                caller,
                appointment.patient_id,
                treats_on(conn),
                target=Target("appointment", str(appointment.id), appointment.patient_id),
            )
        await _audit(conn, caller, "read", appointment)
    return appointment
