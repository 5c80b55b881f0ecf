"""Event subscribers of the referral service, each one line to its use case: intake opens
referrals and reports the measures of the outcome trend shown with the plan; booking's events
say, per appointment, who each patient's psychiatrists are (ADR 0015)."""

from __future__ import annotations

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AssessmentCompleted,
    OutcomeMeasured,
)
from carebridge_referral import care_plans, care_teams, referrals
from carebridge_referral.settings import ReferralSettings
from carebridge_shared.consumer import EventContext, Subscriptions

Context = EventContext[ReferralSettings]
subscriptions = Subscriptions[ReferralSettings]()


@subscriptions.on(AssessmentCompleted)
async def assessment_completed(event: AssessmentCompleted, ctx: Context) -> None:
    await referrals.assessment_completed(ctx, event)


@subscriptions.on(OutcomeMeasured)
async def outcome_measured(event: OutcomeMeasured, ctx: Context) -> None:
    await care_plans.outcome_measured(ctx, event)


@subscriptions.on(AppointmentBooked)
async def appointment_booked(event: AppointmentBooked, ctx: Context) -> None:
    await care_teams.visit_changed(ctx, event, "booked")


@subscriptions.on(AppointmentRescheduled)
async def appointment_rescheduled(event: AppointmentRescheduled, ctx: Context) -> None:
    await care_teams.visit_changed(ctx, event, "booked")


@subscriptions.on(AppointmentCancelled)
async def appointment_cancelled(event: AppointmentCancelled, ctx: Context) -> None:
    await care_teams.visit_changed(ctx, event, "cancelled")


@subscriptions.on(AppointmentCompleted)
async def appointment_completed(event: AppointmentCompleted, ctx: Context) -> None:
    await care_teams.visit_changed(ctx, event, "fulfilled")


@subscriptions.on(AppointmentNoShow)
async def appointment_no_show(event: AppointmentNoShow, ctx: Context) -> None:
    await care_teams.visit_changed(ctx, event, "noshow")
