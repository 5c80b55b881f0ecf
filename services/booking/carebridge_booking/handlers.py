"""Event subscribers of the booking service: intake outcomes decide who may self-book, and
referral's matches decide with which therapist a therapy intake may be booked (and which
therapist treats the patient: until the care team ends or the therapist leaves it)."""

from __future__ import annotations

from collections.abc import Sequence

from carebridge_booking import store
from carebridge_contracts import (
    AssessmentCompleted,
    CareTeamEnded,
    CareTeamMemberLeft,
    SafetyRiskFlagged,
    TherapistMatched,
)
from carebridge_shared.consumer import ConsumerRuntime, EventContext
from carebridge_shared.service import ServiceContext


def register(runtime: ConsumerRuntime, context: ServiceContext) -> None:
    @runtime.on_batch(AssessmentCompleted)  # every journey's first event: set-based
    async def assessments_completed(
        batch: Sequence[tuple[AssessmentCompleted, EventContext]],
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

    @runtime.on(SafetyRiskFlagged)
    async def safety_risk_flagged(event: SafetyRiskFlagged, ctx: EventContext) -> None:
        await store.record_risk(ctx.conn, event.patient_id, event.flagged_at, event.imminent)

    @runtime.on(TherapistMatched)
    async def therapist_matched(event: TherapistMatched, ctx: EventContext) -> None:
        await store.record_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)

    @runtime.on(CareTeamEnded)
    async def care_team_ended(event: CareTeamEnded, ctx: EventContext) -> None:
        await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.therapist_id)

    @runtime.on(CareTeamMemberLeft)
    async def member_left(event: CareTeamMemberLeft, ctx: EventContext) -> None:
        if event.member_role == "therapist":
            await store.end_match(ctx.conn, event.referral_id, event.patient_id, event.clinician_id)
