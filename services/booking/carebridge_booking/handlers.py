"""Event subscribers of the booking service, each one line to its use case: intake's outcomes
decide who may self-book and bring follow-ups forward; referral's matches decide with which
therapist a therapy intake may be booked (`standing`, `earlier_follow_ups`)."""

from __future__ import annotations

from collections.abc import Sequence

from carebridge_booking import earlier_follow_ups, standing
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import (
    AssessmentCompleted,
    CareTeamEnded,
    CareTeamMemberLeft,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
)
from carebridge_shared.consumer import EventContext, Subscriptions

Context = EventContext[BookingSettings]
subscriptions = Subscriptions[BookingSettings]()


@subscriptions.on(SymptomsWorsened)
async def symptoms_worsened(event: SymptomsWorsened, ctx: Context) -> None:
    await earlier_follow_ups.offer(ctx, event)


@subscriptions.on_batch(AssessmentCompleted)  # every journey's first event: set-based
async def assessments_completed(batch: Sequence[tuple[AssessmentCompleted, Context]]) -> None:
    await standing.assessments_completed(batch)


@subscriptions.on(SafetyRiskFlagged)
async def safety_risk_flagged(event: SafetyRiskFlagged, ctx: Context) -> None:
    await standing.safety_risk_flagged(ctx, event)


@subscriptions.on(TherapistMatched)
async def therapist_matched(event: TherapistMatched, ctx: Context) -> None:
    await standing.therapist_matched(ctx, event)


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: Context) -> None:
    await standing.care_team_ended(ctx, event)


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: Context) -> None:
    await standing.member_left(ctx, event)
