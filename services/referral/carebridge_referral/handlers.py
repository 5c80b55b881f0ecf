"""Event subscribers of the referral service: intake opens referrals, booking tells referral
who each patient's psychiatrist is."""

from __future__ import annotations

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AssessmentCompleted,
)
from carebridge_contracts.events.common import VisitType
from carebridge_referral import referrals, store
from carebridge_referral.settings import ReferralSettings
from carebridge_shared.consumer import ConsumerRuntime, EventContext
from carebridge_shared.service import ServiceContext

PSYCHIATRIC_VISITS: frozenset[VisitType] = frozenset(
    {"initial_psychiatric_evaluation", "psychiatric_follow_up"}
)


def register(runtime: ConsumerRuntime, context: ServiceContext) -> None:
    settings = context.settings
    modality = settings.default_modality if isinstance(settings, ReferralSettings) else "CBT"

    @runtime.on(AssessmentCompleted)
    async def assessment_completed(event: AssessmentCompleted, ctx: EventContext) -> None:
        if not event.therapy_interest:
            return
        await referrals.open_from_assessment(
            ctx.conn, context.outbox, event, modality=modality, now=context.clock.now()
        )

    @runtime.on(AppointmentBooked)
    async def appointment_booked(event: AppointmentBooked, ctx: EventContext) -> None:
        await _remember_psychiatrist(ctx, event, "visit_booked")

    @runtime.on(AppointmentCompleted)
    async def appointment_completed(event: AppointmentCompleted, ctx: EventContext) -> None:
        await _remember_psychiatrist(ctx, event, "visit_completed")

    @runtime.on(AppointmentCancelled)
    async def appointment_cancelled(event: AppointmentCancelled, ctx: EventContext) -> None:
        if event.visit_type in PSYCHIATRIC_VISITS:
            await store.forget_booked_psychiatrist(ctx.conn, event.patient_id, event.appointment_id)


async def _remember_psychiatrist(
    ctx: EventContext, event: AppointmentBooked | AppointmentCompleted, source: str
) -> None:
    if event.visit_type not in PSYCHIATRIC_VISITS:
        return
    await store.remember_psychiatrist(
        ctx.conn,
        event.patient_id,
        event.clinician_id,
        source=source,
        observed_at=event.starts_at,
        appointment_id=event.appointment_id,
    )
