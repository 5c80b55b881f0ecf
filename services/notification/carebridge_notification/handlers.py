"""Event subscribers of the notification service: events in, deliveries queued."""

from __future__ import annotations

import uuid

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AssessmentCompleted,
    SafetyRiskFlagged,
)
from carebridge_contracts.events.common import Channel
from carebridge_notification import domain, store
from carebridge_notification.settings import settings_of
from carebridge_shared.consumer import ConsumerRuntime, EventContext
from carebridge_shared.logging import get_logger
from carebridge_shared.service import ServiceContext

log = get_logger(__name__)


async def apply_plan(
    ctx: EventContext, plan: domain.Plan, appointment_id: uuid.UUID | None
) -> None:
    """Write the plan's effect on the handler's connection (already inside its transaction)."""
    envelope = ctx.envelope
    cancelled = 0
    if plan.cancel_pending and appointment_id is not None:
        cancelled = await store.cancel_pending(ctx.conn, appointment_id, envelope.event_id)
    planned: list[tuple[domain.PlannedDelivery, Channel]] = []
    for delivery in plan.deliveries:
        contact = await store.get_contact(ctx.conn, delivery.recipient_kind, delivery.recipient_id)
        planned.append((delivery, domain.planned_channel(contact.info if contact else None)))
    cause = store.Cause(
        event_id=envelope.event_id,
        event_type=envelope.type,
        correlation_id=envelope.correlation_id,
        patient_id=envelope.subject,
        appointment_id=appointment_id,
    )
    added = await store.add_deliveries(ctx.conn, cause, planned)
    log.info(
        "deliveries_planned",
        event_type=envelope.type,
        event_id=str(envelope.event_id),
        added=added,
        cancelled=cancelled,
    )


def register(runtime: ConsumerRuntime, context: ServiceContext) -> None:
    settings = settings_of(context)
    clock = context.clock

    @runtime.on(AppointmentBooked)
    async def booked(event: AppointmentBooked, ctx: EventContext) -> None:
        plan = domain.plan_booked(event, clock.now(), settings.reminder_offsets_minutes)
        await apply_plan(ctx, plan, event.appointment_id)

    @runtime.on(AppointmentRescheduled)
    async def rescheduled(event: AppointmentRescheduled, ctx: EventContext) -> None:
        plan = domain.plan_rescheduled(event, clock.now(), settings.reminder_offsets_minutes)
        await apply_plan(ctx, plan, event.appointment_id)

    @runtime.on(AppointmentCancelled)
    async def cancelled(event: AppointmentCancelled, ctx: EventContext) -> None:
        await apply_plan(ctx, domain.plan_cancelled(event, clock.now()), event.appointment_id)

    @runtime.on(AppointmentCompleted)
    async def completed(event: AppointmentCompleted, ctx: EventContext) -> None:
        await apply_plan(ctx, domain.plan_visit_closed(), event.appointment_id)

    @runtime.on(AppointmentNoShow)
    async def no_show(event: AppointmentNoShow, ctx: EventContext) -> None:
        await apply_plan(ctx, domain.plan_visit_closed(), event.appointment_id)

    @runtime.on(SafetyRiskFlagged)
    async def safety(event: SafetyRiskFlagged, ctx: EventContext) -> None:
        plan = domain.plan_safety_alert(event, settings.on_call_clinician_id, clock.now())
        await apply_plan(ctx, plan, None)

    @runtime.on(AssessmentCompleted)
    async def assessment(event: AssessmentCompleted, ctx: EventContext) -> None:
        await store.channel_from_assessment(ctx.conn, event.patient_id, event.preferred_channel)
