"""Use case: worsening symptoms bring the patient's next follow-up forward, by offering an
earlier slot of the same psychiatrist (EarlierFollowUpOffered; the patient decides)."""

from __future__ import annotations

from carebridge_booking import domain, store
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import EarlierFollowUpOffered, SymptomsWorsened
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


async def offer(ctx: EventContext[BookingSettings], event: SymptomsWorsened) -> None:
    """Offer the psychiatrist of the patient's next follow-up an earlier slot of their own."""
    conn, now, event_id = ctx.conn, ctx.clock.now(), ctx.envelope.event_id
    visits = await store.list_appointments(
        conn, patient_id=event.patient_id, clinician_id=None, status="booked"
    )
    follow_up = domain.next_follow_up(visits, now)
    if follow_up is None:
        log.info("earlier_follow_up_none_booked", event_id=str(event_id))
        return
    clinician = await store.get_clinician(conn, follow_up.clinician_id)
    if clinician is None or not clinician.active:
        log.info("earlier_follow_up_clinician_inactive", event_id=str(event_id))
        return
    busy = await store.busy_intervals(conn, [clinician.id], now, follow_up.starts_at)
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
            event_id=str(event_id),
            appointment_id=str(follow_up.id),
        )
        return
    await ctx.publish(_offered(event, follow_up, slot))
    log.info(
        "earlier_follow_up_offered",
        appointment_id=str(follow_up.id),
        clinician_id=clinician.id,
        offered_starts_at=slot.start.isoformat(),
    )


def _offered(
    event: SymptomsWorsened, follow_up: domain.Appointment, slot: domain.Interval
) -> EarlierFollowUpOffered:
    return EarlierFollowUpOffered(
        patient_id=event.patient_id,
        appointment_id=follow_up.id,
        clinician_id=follow_up.clinician_id,
        assessment_id=event.assessment_id,
        booked_starts_at=follow_up.starts_at,
        offered_starts_at=slot.start,
        offered_ends_at=slot.end,
    )
