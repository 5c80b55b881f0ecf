"""Use cases of referral's care-team events: who is a member of the patient's team (and so
hears of plan changes and worsening), and the notices of a match."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from carebridge_contracts import (
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    TherapistMatched,
)
from carebridge_notification import patient_education, plan_changes, store
from carebridge_notification.domain import membership, planning
from carebridge_notification.domain.membership import Member, TeamChange
from carebridge_notification.queueing import queue_plan
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

Decide = Callable[[Sequence[Member]], TeamChange]


async def therapist_matched(
    ctx: EventContext[NotificationSettings], event: TherapistMatched
) -> None:
    """The patient and the therapist hear of the match; the patient learns about the modality."""
    await queue_plan(ctx, planning.plan_therapist_matched(event, ctx.clock.now()), None)
    params = {"modality": event.modality, "referral_id": str(event.referral_id)}
    await patient_education.teach(ctx, "match", params)


async def formed(ctx: EventContext[NotificationSettings], event: CareTeamFormed) -> None:
    at = ctx.envelope.occurred_at
    await _change_team(ctx, event.patient_id, lambda team: membership.team_formed(team, event, at))


async def ended(ctx: EventContext[NotificationSettings], event: CareTeamEnded) -> None:
    """The therapist leaves; the match notices still queued for the referral are cancelled."""
    event_id = ctx.envelope.event_id
    change = await _change_team(
        ctx, event.patient_id, lambda team: membership.team_ended(team, event)
    )
    if not change.leaves:
        log.info(
            "care_team_end_without_member",
            event_id=str(event_id),
            care_team_id=str(event.care_team_id),
        )
    cancelled = await store.cancel_match_notices(
        ctx.conn, event.patient_id, event.referral_id, event_id
    )
    if cancelled:
        log.info("match_notices_cancelled", event_id=str(event_id), count=cancelled)


async def member_joined(
    ctx: EventContext[NotificationSettings], event: CareTeamMemberJoined
) -> None:
    at = ctx.envelope.occurred_at
    await _change_team(
        ctx, event.patient_id, lambda team: membership.member_joined(team, event, at)
    )


async def member_left(ctx: EventContext[NotificationSettings], event: CareTeamMemberLeft) -> None:
    await _change_team(ctx, event.patient_id, lambda team: membership.member_left(team, event))


async def _change_team(
    ctx: EventContext[NotificationSettings], patient_id: str, decide: Decide
) -> TeamChange:
    """Under the patient's team lock: decide the change from the current team, apply it."""
    await store.lock_care_team(ctx.conn, patient_id)
    change = decide(await store.care_team(ctx.conn, patient_id))
    await _apply(ctx, patient_id, change)
    return change


async def _apply(
    ctx: EventContext[NotificationSettings], patient_id: str, change: TeamChange
) -> None:
    """Remove who leaves (their queued plan notices go too), add who joins, then catch the
    joiners up on plan changes they missed."""
    event_id = ctx.envelope.event_id
    for member in change.leaves:
        cancelled = await store.remove_member(ctx.conn, patient_id, member.clinician_id, event_id)
        log.info(
            "care_team_member_removed",
            event_id=str(event_id),
            clinician_id=member.clinician_id,
            role=member.role,
            notices_cancelled=cancelled,
        )
    for member in change.joins:
        await store.add_member(ctx.conn, patient_id, member, event_id)
        log.info(
            "care_team_member_added",
            event_id=str(event_id),
            clinician_id=member.clinician_id,
            role=member.role,
        )
    if change.joins:
        await plan_changes.catch_up_joiners(ctx, patient_id, change.joins)
