"""Event subscribers of the notification service: events in, deliveries queued."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AssessmentCompleted,
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ConsentRevoked,
    EarlierFollowUpOffered,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
    TherapistRequested,
)
from carebridge_contracts.events.common import Channel
from carebridge_notification import domain, store
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext, Subscriptions
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

subscriptions = Subscriptions[NotificationSettings]()


async def apply_plan(
    ctx: EventContext[NotificationSettings],
    plan: domain.Plan,
    appointment_id: uuid.UUID | None,
    *,
    cause: store.Cause | None = None,
) -> int:
    """Write the plan's effect on the handler's connection (already inside its transaction).

    `cause` defaults to the event being handled; a member's catch-up names an earlier one.
    Returns how many deliveries were added.
    """
    envelope = ctx.envelope
    cancelled = 0
    if plan.cancel_pending and appointment_id is not None:
        cancelled = await store.cancel_pending(ctx.conn, appointment_id, envelope.event_id)
    planned: list[tuple[domain.PlannedDelivery, Channel]] = []
    for delivery in plan.deliveries:
        contact = await store.get_contact(ctx.conn, delivery.recipient_kind, delivery.recipient_id)
        planned.append((delivery, domain.planned_channel(contact.info if contact else None)))
    if cause is None:
        cause = store.Cause(
            event_id=envelope.event_id,
            event_type=envelope.type,
            correlation_id=envelope.correlation_id,
            patient_id=envelope.subject,
            appointment_id=appointment_id,
        )
    added = await store.add_deliveries(ctx.conn, cause, planned)
    log.info(
        "deliveries_planned",
        event_type=envelope.type,
        event_id=str(envelope.event_id),
        cause_event_id=str(cause.event_id),
        added=added,
        cancelled=cancelled,
    )
    return added


def plan_change_cause(patient_id: str, change: domain.PlanChange) -> store.Cause:
    return store.Cause(
        event_id=change.event_id,
        event_type=CarePlanUpdated.event_type,
        correlation_id=change.correlation_id,
        patient_id=patient_id,
        appointment_id=None,
    )


async def apply_team_change(
    ctx: EventContext[NotificationSettings],
    patient_id: str,
    change: domain.TeamChange,
    due_at: datetime,
) -> None:
    """Remove who leaves (their queued plan notices go too), add who joins, then tell each
    joiner of plan changes made since the team event happened that were applied before it
    (the care-plans topic has no order with the referrals topic)."""
    envelope = ctx.envelope
    for member in change.leaves:
        cancelled = await store.remove_member(
            ctx.conn, patient_id, member.clinician_id, envelope.event_id
        )
        log.info(
            "care_team_member_removed",
            event_id=str(envelope.event_id),
            clinician_id=member.clinician_id,
            role=member.role,
            notices_cancelled=cancelled,
        )
    for member in change.joins:
        await store.add_member(ctx.conn, patient_id, member, envelope.event_id)
        log.info(
            "care_team_member_added",
            event_id=str(envelope.event_id),
            clinician_id=member.clinician_id,
            role=member.role,
        )
    if not change.joins:
        return
    sharing = await store.get_consent(ctx.conn, patient_id, domain.CARE_PLAN_SHARING)
    joins = domain.consented(change.joins, sharing)
    for plan_change in await store.plan_changes_since(ctx.conn, patient_id, envelope.occurred_at):
        recipients = [m for m in joins if m.clinician_id != plan_change.author_id]
        plan = domain.plan_care_plan_updated(plan_change, recipients, due_at)
        await apply_plan(ctx, plan, None, cause=plan_change_cause(patient_id, plan_change))


async def teach(
    ctx: EventContext[NotificationSettings],
    step: domain.EducationStep,
    params: Mapping[str, str],
    now: datetime,
) -> None:
    """The step's education message to the patient, once per patient and step; the template
    version they get is recorded with it."""
    patient_id = ctx.envelope.subject
    delivery = domain.education_delivery(step, patient_id, params, now)
    recorded = await store.record_education(
        ctx.conn,
        patient_id,
        step,
        delivery.template,
        int(delivery.params["template_version"]),
        ctx.envelope.event_id,
    )
    if not recorded:
        log.info("education_already_given", event_id=str(ctx.envelope.event_id), step=step)
        return
    await apply_plan(ctx, domain.Plan((delivery,)), None)


def plan_notice_due(ctx: EventContext[NotificationSettings]) -> datetime:
    """When a care-plan notice queued now is due (after the configured delay)."""
    return ctx.clock.now() + timedelta(seconds=ctx.settings.care_plan_notice_delay_seconds)


@subscriptions.on(AppointmentBooked)
async def booked(event: AppointmentBooked, ctx: EventContext[NotificationSettings]) -> None:
    plan = domain.plan_booked(event, ctx.clock.now(), ctx.settings.reminder_offsets_minutes)
    await apply_plan(ctx, plan, event.appointment_id)
    step = domain.education_for_booking(event)
    if step is not None:
        await teach(ctx, step, {}, ctx.clock.now())


@subscriptions.on(AppointmentRescheduled)
async def rescheduled(
    event: AppointmentRescheduled, ctx: EventContext[NotificationSettings]
) -> None:
    plan = domain.plan_rescheduled(event, ctx.clock.now(), ctx.settings.reminder_offsets_minutes)
    await apply_plan(ctx, plan, event.appointment_id)


@subscriptions.on(AppointmentCancelled)
async def cancelled(event: AppointmentCancelled, ctx: EventContext[NotificationSettings]) -> None:
    await apply_plan(ctx, domain.plan_cancelled(event, ctx.clock.now()), event.appointment_id)


@subscriptions.on(AppointmentCompleted)
async def completed(event: AppointmentCompleted, ctx: EventContext[NotificationSettings]) -> None:
    await apply_plan(ctx, domain.plan_visit_closed(), event.appointment_id)


@subscriptions.on(AppointmentNoShow)
async def no_show(event: AppointmentNoShow, ctx: EventContext[NotificationSettings]) -> None:
    await apply_plan(ctx, domain.plan_visit_closed(), event.appointment_id)


@subscriptions.on(SafetyRiskFlagged)
async def safety(event: SafetyRiskFlagged, ctx: EventContext[NotificationSettings]) -> None:
    plan = domain.plan_safety_alert(event, ctx.settings.on_call_clinician_id, ctx.clock.now())
    await apply_plan(ctx, plan, None)


@subscriptions.on(AssessmentCompleted)
async def assessment(event: AssessmentCompleted, ctx: EventContext[NotificationSettings]) -> None:
    await store.channel_from_assessment(ctx.conn, event.patient_id, event.preferred_channel)
    bands = {"phq9_band": event.phq9_band, "gad7_band": event.gad7_band}
    await teach(ctx, "assessment", bands, ctx.clock.now())


@subscriptions.on(TherapistRequested)
async def therapist_requested(
    event: TherapistRequested, ctx: EventContext[NotificationSettings]
) -> None:
    await teach(ctx, "referral", {"modality": event.modality}, ctx.clock.now())


@subscriptions.on(TherapistMatched)
async def therapist_matched(
    event: TherapistMatched, ctx: EventContext[NotificationSettings]
) -> None:
    await apply_plan(ctx, domain.plan_therapist_matched(event, ctx.clock.now()), None)
    params = {"modality": event.modality, "referral_id": str(event.referral_id)}
    await teach(ctx, "match", params, ctx.clock.now())


@subscriptions.on(SymptomsWorsened)
async def symptoms_worsened(
    event: SymptomsWorsened, ctx: EventContext[NotificationSettings]
) -> None:
    """Each member of the care team is told once (the therapist only while the patient
    shares the plan with them, where the trend is)."""
    await store.lock_care_team(ctx.conn, event.patient_id)
    team = await store.care_team(ctx.conn, event.patient_id)
    sharing = await store.get_consent(ctx.conn, event.patient_id, domain.CARE_PLAN_SHARING)
    told = domain.consented(team, sharing)
    if not told:
        log.info("symptoms_worsened_no_care_team", event_id=str(ctx.envelope.event_id))
    await apply_plan(ctx, domain.plan_symptoms_worsened(event, told, ctx.clock.now()), None)


@subscriptions.on(EarlierFollowUpOffered)
async def earlier_follow_up(
    event: EarlierFollowUpOffered, ctx: EventContext[NotificationSettings]
) -> None:
    plan = domain.plan_earlier_follow_up(event, ctx.clock.now())
    await apply_plan(ctx, plan, event.appointment_id)  # a reschedule cancels it if queued


@subscriptions.on(CareTeamFormed)
async def care_team_formed(event: CareTeamFormed, ctx: EventContext[NotificationSettings]) -> None:
    await store.lock_care_team(ctx.conn, event.patient_id)
    current = await store.care_team(ctx.conn, event.patient_id)
    change = domain.team_formed(current, event, ctx.envelope.occurred_at)
    await apply_team_change(ctx, event.patient_id, change, plan_notice_due(ctx))


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: EventContext[NotificationSettings]) -> None:
    await store.lock_care_team(ctx.conn, event.patient_id)
    current = await store.care_team(ctx.conn, event.patient_id)
    change = domain.team_ended(current, event)
    if not change.leaves:
        log.info(
            "care_team_end_without_member",
            event_id=str(ctx.envelope.event_id),
            care_team_id=str(event.care_team_id),
        )
    await apply_team_change(ctx, event.patient_id, change, plan_notice_due(ctx))
    cancelled = await store.cancel_match_notices(
        ctx.conn, event.patient_id, event.referral_id, ctx.envelope.event_id
    )
    if cancelled:
        log.info("match_notices_cancelled", event_id=str(ctx.envelope.event_id), count=cancelled)


@subscriptions.on(CareTeamMemberJoined)
async def member_joined(
    event: CareTeamMemberJoined, ctx: EventContext[NotificationSettings]
) -> None:
    await store.lock_care_team(ctx.conn, event.patient_id)
    current = await store.care_team(ctx.conn, event.patient_id)
    change = domain.member_joined(current, event, ctx.envelope.occurred_at)
    await apply_team_change(ctx, event.patient_id, change, plan_notice_due(ctx))


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: EventContext[NotificationSettings]) -> None:
    await store.lock_care_team(ctx.conn, event.patient_id)
    current = await store.care_team(ctx.conn, event.patient_id)
    change = domain.member_left(current, event)
    await apply_team_change(ctx, event.patient_id, change, plan_notice_due(ctx))


@subscriptions.on(CarePlanUpdated)
async def care_plan_updated(
    event: CarePlanUpdated, ctx: EventContext[NotificationSettings]
) -> None:
    envelope = ctx.envelope
    change = domain.PlanChange.of(
        event, envelope.event_id, envelope.correlation_id, envelope.occurred_at
    )
    await store.lock_care_team(ctx.conn, event.patient_id)
    await store.record_plan_change(ctx.conn, event.patient_id, change)
    team = await store.care_team(ctx.conn, event.patient_id)
    recipients = domain.plan_change_recipients(team, event.author_id, change.occurred_at)
    sharing = await store.get_consent(ctx.conn, event.patient_id, domain.CARE_PLAN_SHARING)
    told = domain.consented(recipients.members, sharing)
    if len(told) < len(recipients.members):
        log.info(
            "care_plan_notice_withheld_consent_revoked",
            event_id=str(envelope.event_id),
            withheld=len(recipients.members) - len(told),
        )
    if not recipients.author_is_member:
        log.warning(
            "care_plan_author_not_in_care_team",
            event_id=str(envelope.event_id),
            author_id=event.author_id,
            author_role=event.author_role,
            plan_version=event.plan_version,
            recipients=len(recipients.members),
        )
    plan = domain.plan_care_plan_updated(change, told, plan_notice_due(ctx))
    await apply_plan(ctx, plan, None, cause=plan_change_cause(event.patient_id, change))


@subscriptions.on(ConsentGranted)
async def consent_granted(event: ConsentGranted, ctx: EventContext[NotificationSettings]) -> None:
    """Sharing resumes: therapists are told of later changes again, and of the changes made
    since the grant that were applied before it (the consents topic has no order with the
    care-plans topic)."""
    envelope = ctx.envelope
    await store.lock_care_team(ctx.conn, event.patient_id)
    applied = await store.set_consent(
        ctx.conn, event.patient_id, event.scope, True, envelope.occurred_at
    )
    log.info(
        "consent_granted",
        event_id=str(envelope.event_id),
        scope=event.scope,
        applied=applied,
    )
    if not applied or event.scope != domain.CARE_PLAN_SHARING:
        return
    team = await store.care_team(ctx.conn, event.patient_id)
    due_at = plan_notice_due(ctx)
    since = envelope.occurred_at
    for plan_change in await store.plan_changes_since(ctx.conn, event.patient_id, since):
        recipients = domain.plan_change_recipients(
            team, plan_change.author_id, plan_change.occurred_at
        )
        therapists = [m for m in recipients.members if m.role == "therapist"]
        plan = domain.plan_care_plan_updated(plan_change, therapists, due_at)
        cause = plan_change_cause(event.patient_id, plan_change)
        await apply_plan(ctx, plan, None, cause=cause)


@subscriptions.on(ConsentRevoked)
async def consent_revoked(event: ConsentRevoked, ctx: EventContext[NotificationSettings]) -> None:
    """Sharing stops: the therapist's still-queued plan notices about the patient are
    cancelled, and no new ones are queued while the consent stays revoked."""
    envelope = ctx.envelope
    await store.lock_care_team(ctx.conn, event.patient_id)
    applied = await store.set_consent(
        ctx.conn, event.patient_id, event.scope, False, envelope.occurred_at
    )
    cancelled = 0
    if applied and event.scope == domain.CARE_PLAN_SHARING:
        team = await store.care_team(ctx.conn, event.patient_id)
        sharing = domain.Consent(granted=False, updated_at=envelope.occurred_at)
        allowed = {m.clinician_id for m in domain.consented(team, sharing)}
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
