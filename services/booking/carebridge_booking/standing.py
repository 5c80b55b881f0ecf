"""Use cases of a patient's standing in booking: intake's outcomes decide who may self-book,
referral's matches with which therapist a therapy intake may be booked (and which therapist
treats the patient: until the care team ends or the therapist leaves it); and reading it."""

from __future__ import annotations

from collections.abc import Sequence

from carebridge_booking import domain, store
from carebridge_booking.access import treats_on
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import (
    AssessmentCompleted,
    CareTeamEnded,
    CareTeamMemberLeft,
    SafetyRiskFlagged,
    TherapistMatched,
)
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, require_patient_access
from carebridge_shared.consumer import EventContext
from carebridge_shared.context import ServiceContext

Context = EventContext[BookingSettings]


async def assessments_completed(batch: Sequence[tuple[AssessmentCompleted, Context]]) -> None:
    """Every journey's first event, so recorded set-based for a whole batch (one
    transaction: every event's `conn` is the same)."""
    await store.record_assessments(
        batch[0][1].conn,
        [
            store.AssessmentSeen(
                e.patient_id, e.assessment_id, e.completed_at, e.cssrs_imminent_risk
            )
            for e, _ in batch
        ],
    )


async def safety_risk_flagged(ctx: Context, event: SafetyRiskFlagged) -> None:
    await store.record_risk(ctx.conn, event.patient_id, event.flagged_at, event.imminent)


async def therapist_matched(ctx: Context, event: TherapistMatched) -> None:
    await store.record_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)


async def care_team_ended(ctx: Context, event: CareTeamEnded) -> None:
    await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)


async def member_left(ctx: Context, event: CareTeamMemberLeft) -> None:
    """Only a therapist leaving ends a match (a psychiatrist's visits are their own)."""
    if event.member_role == "therapist":
        await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.clinician_id)


async def read(
    ctx: ServiceContext[BookingSettings], caller: Principal, patient_id: str
) -> domain.PatientStanding:
    """For the patient and a clinician who treats them; the read is audited (resource
    `eligibility`, the patient's id)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_patient_access(
            caller,
            patient_id,
            treats_on(conn),
            target=Target("eligibility", patient_id, patient_id),
        )
        standing = await store.patient_standing(conn, patient_id)
        await audit.record(conn, caller, "read", "eligibility", patient_id, patient_id)
    return standing
