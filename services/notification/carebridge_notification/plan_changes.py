"""Use cases of the shared care plan: who is told of a change, and the patient's consent to
share it with the therapist (granted: told again, with a catch-up; revoked: queued notices go)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from carebridge_contracts import CarePlanUpdated, ConsentGranted, ConsentRevoked
from carebridge_notification import store
from carebridge_notification.domain import membership, planning
from carebridge_notification.domain.membership import Member, PlanChange
from carebridge_notification.queueing import queue_plan
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


def notice_due_at(ctx: EventContext[NotificationSettings]) -> datetime:
    """Plan notices wait a little, so a burst of edits (or a member leaving) can cancel them."""
    return ctx.clock.now() + timedelta(seconds=ctx.settings.care_plan_notice_delay_seconds)


def cause_of(patient_id: str, change: PlanChange) -> store.Cause:
    """A plan change as the cause of its notices, whichever event queues them."""
    return store.Cause(
        event_id=change.event_id,
        event_type=CarePlanUpdated.event_type,
        correlation_id=change.correlation_id,
        patient_id=patient_id,
        appointment_id=None,
    )


async def care_plan_updated(
    ctx: EventContext[NotificationSettings], event: CarePlanUpdated
) -> None:
    """Record the change (for members who join later), then tell every member but the author
    who had joined when it happened and may hear of it."""
    envelope = ctx.envelope
    change = PlanChange.of(event, envelope.event_id, envelope.correlation_id, envelope.occurred_at)
    await store.lock_care_team(ctx.conn, event.patient_id)
    await store.record_plan_change(ctx.conn, event.patient_id, change)
    team = await store.care_team(ctx.conn, event.patient_id)
    recipients = membership.plan_change_recipients(team, event.author_id, change.occurred_at)
    sharing = await store.get_consent(ctx.conn, event.patient_id, membership.CARE_PLAN_SHARING)
    told = membership.consented(recipients.members, sharing)
    _log_who_is_not_told(ctx, event, recipients, told)
    plan = planning.plan_care_plan_updated(change, told, notice_due_at(ctx))
    await queue_plan(ctx, plan, None, cause=cause_of(event.patient_id, change))


def _log_who_is_not_told(
    ctx: EventContext[NotificationSettings],
    event: CarePlanUpdated,
    recipients: membership.PlanRecipients,
    told: Sequence[Member],
) -> None:
    event_id = str(ctx.envelope.event_id)
    if len(told) < len(recipients.members):
        withheld = len(recipients.members) - len(told)
        log.info("care_plan_notice_withheld_consent_revoked", event_id=event_id, withheld=withheld)
    if not recipients.author_is_member:
        log.warning(
            "care_plan_author_not_in_care_team",
            event_id=event_id,
            author_id=event.author_id,
            author_role=event.author_role,
            plan_version=event.plan_version,
            recipients=len(recipients.members),
        )


async def catch_up_joiners(
    ctx: EventContext[NotificationSettings], patient_id: str, joins: Sequence[Member]
) -> None:
    """Tell each joiner of plan changes made since the team event happened that were applied
    before it (the care-plans topic has no order with the referrals topic)."""
    sharing = await store.get_consent(ctx.conn, patient_id, membership.CARE_PLAN_SHARING)
    told = membership.consented(joins, sharing)
    due_at = notice_due_at(ctx)
    for change in await store.plan_changes_since(ctx.conn, patient_id, ctx.envelope.occurred_at):
        recipients = [m for m in told if m.clinician_id != change.author_id]
        plan = planning.plan_care_plan_updated(change, recipients, due_at)
        await queue_plan(ctx, plan, None, cause=cause_of(patient_id, change))


async def consent_granted(ctx: EventContext[NotificationSettings], event: ConsentGranted) -> None:
    """Sharing resumes: therapists are told of later changes again, and of the changes made
    since the grant that were applied before it (the consents topic has no order with the
    care-plans topic)."""
    await store.lock_care_team(ctx.conn, event.patient_id)
    applied = await store.set_consent(
        ctx.conn, event.patient_id, event.scope, True, ctx.envelope.occurred_at
    )
    log.info(
        "consent_granted",
        event_id=str(ctx.envelope.event_id),
        scope=event.scope,
        applied=applied,
    )
    if applied and event.scope == membership.CARE_PLAN_SHARING:
        await _tell_therapists_of_changes_since_grant(ctx, event.patient_id)


async def _tell_therapists_of_changes_since_grant(
    ctx: EventContext[NotificationSettings], patient_id: str
) -> None:
    team = await store.care_team(ctx.conn, patient_id)
    due_at = notice_due_at(ctx)
    for change in await store.plan_changes_since(ctx.conn, patient_id, ctx.envelope.occurred_at):
        recipients = membership.plan_change_recipients(team, change.author_id, change.occurred_at)
        therapists = [m for m in recipients.members if m.role == "therapist"]
        plan = planning.plan_care_plan_updated(change, therapists, due_at)
        await queue_plan(ctx, plan, None, cause=cause_of(patient_id, change))


async def consent_revoked(ctx: EventContext[NotificationSettings], event: ConsentRevoked) -> None:
    """Sharing stops: the therapist's still-queued plan notices about the patient are
    cancelled, and no new ones are queued while the consent stays revoked."""
    envelope = ctx.envelope
    await store.lock_care_team(ctx.conn, event.patient_id)
    applied = await store.set_consent(
        ctx.conn, event.patient_id, event.scope, False, envelope.occurred_at
    )
    cancelled = 0
    if applied and event.scope == membership.CARE_PLAN_SHARING:
        team = await store.care_team(ctx.conn, event.patient_id)
        sharing = membership.Consent(granted=False, updated_at=envelope.occurred_at)
        allowed = {m.clinician_id for m in membership.consented(team, sharing)}
        withheld = [m.clinician_id for m in team if m.clinician_id not in allowed]
        cancelled = await store.cancel_plan_notices(
            ctx.conn, event.patient_id, withheld, envelope.event_id
        )
    log.info(
        "consent_revoked",
        event_id=str(envelope.event_id),
        scope=event.scope,
        applied=applied,
        notices_cancelled=cancelled,
    )
