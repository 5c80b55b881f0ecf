"""Event subscribers of the referral service: intake opens referrals and reports the measures of
the outcome trend shown with the plan; booking's events say, per appointment, who each
patient's psychiatrists are (ADR 0015)."""

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
from carebridge_referral import care_teams, domain, referrals, store
from carebridge_referral.settings import ReferralSettings
from carebridge_shared.consumer import EventContext, Subscriptions

VisitEvent = (
    AppointmentBooked
    | AppointmentRescheduled
    | AppointmentCancelled
    | AppointmentCompleted
    | AppointmentNoShow
)


subscriptions = Subscriptions[ReferralSettings]()


@subscriptions.on(AssessmentCompleted)
async def assessment_completed(
    event: AssessmentCompleted, ctx: EventContext[ReferralSettings]
) -> None:
    await store.record_intake_measure(ctx.conn, event)  # a baseline of the outcome trend
    if not event.therapy_interest:
        return
    await referrals.open_from_assessment(
        ctx.conn,
        ctx.outbox,
        event,
        modality=ctx.settings.default_modality,
        now=ctx.clock.now(),
    )


@subscriptions.on(OutcomeMeasured)
async def outcome_measured(event: OutcomeMeasured, ctx: EventContext[ReferralSettings]) -> None:
    await store.record_repeat_measure(ctx.conn, event)


async def visit(
    event: VisitEvent, ctx: EventContext[ReferralSettings], status: domain.VisitStatus
) -> None:
    if event.visit_type not in domain.PSYCHIATRIC_VISITS:
        return
    # Matching forms teams under this lock: a team is either formed already (and follows
    # the visit below) or is formed afterwards with the visit in view.
    await store.lock_matching(ctx.conn)
    await store.record_visit(
        ctx.conn,
        appointment_id=event.appointment_id,
        patient_id=event.patient_id,
        psychiatrist_id=event.clinician_id,
        status=status,
        starts_at=event.starts_at,
    )
    await care_teams.follow_current_psychiatrist(ctx.conn, ctx.outbox, event.patient_id)


@subscriptions.on(AppointmentBooked)
async def appointment_booked(event: AppointmentBooked, ctx: EventContext[ReferralSettings]) -> None:
    await visit(event, ctx, "booked")


@subscriptions.on(AppointmentRescheduled)
async def appointment_rescheduled(
    event: AppointmentRescheduled, ctx: EventContext[ReferralSettings]
) -> None:
    await visit(event, ctx, "booked")


@subscriptions.on(AppointmentCancelled)
async def appointment_cancelled(
    event: AppointmentCancelled, ctx: EventContext[ReferralSettings]
) -> None:
    await visit(event, ctx, "cancelled")


@subscriptions.on(AppointmentCompleted)
async def appointment_completed(
    event: AppointmentCompleted, ctx: EventContext[ReferralSettings]
) -> None:
    await visit(event, ctx, "fulfilled")


@subscriptions.on(AppointmentNoShow)
async def appointment_no_show(
    event: AppointmentNoShow, ctx: EventContext[ReferralSettings]
) -> None:
    await visit(event, ctx, "noshow")
