"""Use cases of booking's appointment events: confirmations, notices and reminders."""

from __future__ import annotations

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    EarlierFollowUpOffered,
)
from carebridge_notification import patient_education
from carebridge_notification.domain import education, planning
from carebridge_notification.queueing import queue_plan
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext


async def booked(ctx: EventContext[NotificationSettings], event: AppointmentBooked) -> None:
    """Confirmations to both, the patient's reminders, and a first follow-up's education."""
    offsets = ctx.settings.reminder_offsets_minutes
    plan = planning.plan_booked(event, ctx.clock.now(), offsets)
    await queue_plan(ctx, plan, event.appointment_id)
    step = education.education_for_booking(event)
    if step is not None:
        await patient_education.teach(ctx, step, {})


async def rescheduled(
    ctx: EventContext[NotificationSettings], event: AppointmentRescheduled
) -> None:
    offsets = ctx.settings.reminder_offsets_minutes
    plan = planning.plan_rescheduled(event, ctx.clock.now(), offsets)
    await queue_plan(ctx, plan, event.appointment_id)


async def cancelled(ctx: EventContext[NotificationSettings], event: AppointmentCancelled) -> None:
    await queue_plan(ctx, planning.plan_cancelled(event, ctx.clock.now()), event.appointment_id)


async def closed(
    ctx: EventContext[NotificationSettings], event: AppointmentCompleted | AppointmentNoShow
) -> None:
    """A completed visit or a no-show: its still-queued reminders are cancelled."""
    await queue_plan(ctx, planning.plan_visit_closed(), event.appointment_id)


async def earlier_follow_up_offered(
    ctx: EventContext[NotificationSettings], event: EarlierFollowUpOffered
) -> None:
    plan = planning.plan_earlier_follow_up(event, ctx.clock.now())
    await queue_plan(ctx, plan, event.appointment_id)  # a reschedule cancels it if queued
