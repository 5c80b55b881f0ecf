"""Event subscribers of the booking service: intake outcomes decide who may self-book, and
referral's matches decide with which therapist a therapy intake may be booked (and which
therapist treats the patient: until the care team ends or the therapist leaves it)."""

from __future__ import annotations

from collections.abc import Sequence

from carebridge_booking import domain, store
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import (
    AssessmentCompleted,
    CareTeamEnded,
    CareTeamMemberLeft,
    EarlierFollowUpOffered,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
)
from carebridge_shared.consumer import EventContext, Subscriptions
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

subscriptions = Subscriptions[BookingSettings]()


@subscriptions.on(SymptomsWorsened)
async def symptoms_worsened(event: SymptomsWorsened, ctx: EventContext[BookingSettings]) -> None:
    """Offer the psychiatrist of the patient's next follow-up an earlier slot of their own."""
    now = ctx.clock.now()
    visits = await store.list_appointments(
        ctx.conn, patient_id=event.patient_id, clinician_id=None, status="booked"
    )
    follow_up = domain.next_follow_up(visits, now)
    if follow_up is None:
        log.info("earlier_follow_up_none_booked", event_id=str(ctx.envelope.event_id))
        return
    clinician = await store.get_clinician(ctx.conn, follow_up.clinician_id)
    if clinician is None or not clinician.active:
        log.info("earlier_follow_up_clinician_inactive", event_id=str(ctx.envelope.event_id))
        return
    busy = await store.busy_intervals(ctx.conn, [clinician.id], now, follow_up.starts_at)
    patient_busy = [domain.Interval(v.starts_at, v.ends_at) for v in visits if v.id != follow_up.id]
    slot = domain.earlier_follow_up_slot(
        clinician,
        follow_up,
        ctx.settings.rules(),
        now,
        [*busy.get(clinician.id, []), *patient_busy],
    )
    if slot is None:
        log.info(
            "earlier_follow_up_no_free_slot",
            event_id=str(ctx.envelope.event_id),
            appointment_id=str(follow_up.id),
        )
        return
    await ctx.publish(
        EarlierFollowUpOffered(
            patient_id=event.patient_id,
            appointment_id=follow_up.id,
            clinician_id=clinician.id,
            assessment_id=event.assessment_id,
            booked_starts_at=follow_up.starts_at,
            offered_starts_at=slot.start,
            offered_ends_at=slot.end,
        ),
    )
    log.info(
        "earlier_follow_up_offered",
        appointment_id=str(follow_up.id),
        clinician_id=clinician.id,
        offered_starts_at=slot.start.isoformat(),
    )


@subscriptions.on_batch(AssessmentCompleted)  # every journey's first event: set-based
async def assessments_completed(
    batch: Sequence[tuple[AssessmentCompleted, EventContext[BookingSettings]]],
) -> None:
    await store.record_assessments(
        batch[0][1].conn,
        [
            store.AssessmentSeen(
                e.patient_id, e.assessment_id, e.completed_at, e.cssrs_imminent_risk
            )
            for e, _ in batch
        ],
    )


@subscriptions.on(SafetyRiskFlagged)
async def safety_risk_flagged(event: SafetyRiskFlagged, ctx: EventContext[BookingSettings]) -> None:
    await store.record_risk(ctx.conn, event.patient_id, event.flagged_at, event.imminent)


@subscriptions.on(TherapistMatched)
async def therapist_matched(event: TherapistMatched, ctx: EventContext[BookingSettings]) -> None:
    await store.record_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: EventContext[BookingSettings]) -> None:
    await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: EventContext[BookingSettings]) -> None:
    if event.member_role == "therapist":
        await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.clinician_id)
