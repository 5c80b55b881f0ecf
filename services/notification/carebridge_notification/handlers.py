"""Event subscribers of the notification service: each translates one event into its use case."""

from __future__ import annotations

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
from carebridge_notification import (
    appointments,
    care_team,
    clinical_alerts,
    patient_education,
    plan_changes,
)
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext, Subscriptions

subscriptions = Subscriptions[NotificationSettings]()
Context = EventContext[NotificationSettings]


@subscriptions.on(AppointmentBooked)
async def booked(event: AppointmentBooked, ctx: Context) -> None:
    await appointments.booked(ctx, event)


@subscriptions.on(AppointmentRescheduled)
async def rescheduled(event: AppointmentRescheduled, ctx: Context) -> None:
    await appointments.rescheduled(ctx, event)


@subscriptions.on(AppointmentCancelled)
async def cancelled(event: AppointmentCancelled, ctx: Context) -> None:
    await appointments.cancelled(ctx, event)


@subscriptions.on(AppointmentCompleted)
async def completed(event: AppointmentCompleted, ctx: Context) -> None:
    await appointments.closed(ctx, event)


@subscriptions.on(AppointmentNoShow)
async def no_show(event: AppointmentNoShow, ctx: Context) -> None:
    await appointments.closed(ctx, event)


@subscriptions.on(SafetyRiskFlagged)
async def safety(event: SafetyRiskFlagged, ctx: Context) -> None:
    await clinical_alerts.safety_risk_flagged(ctx, event)


@subscriptions.on(AssessmentCompleted)
async def assessment(event: AssessmentCompleted, ctx: Context) -> None:
    await patient_education.assessment_completed(ctx, event)


@subscriptions.on(TherapistRequested)
async def therapist_requested(event: TherapistRequested, ctx: Context) -> None:
    await patient_education.therapist_requested(ctx, event)


@subscriptions.on(TherapistMatched)
async def therapist_matched(event: TherapistMatched, ctx: Context) -> None:
    await care_team.therapist_matched(ctx, event)


@subscriptions.on(SymptomsWorsened)
async def symptoms_worsened(event: SymptomsWorsened, ctx: Context) -> None:
    await clinical_alerts.symptoms_worsened(ctx, event)


@subscriptions.on(EarlierFollowUpOffered)
async def earlier_follow_up(event: EarlierFollowUpOffered, ctx: Context) -> None:
    await appointments.earlier_follow_up_offered(ctx, event)


@subscriptions.on(CareTeamFormed)
async def care_team_formed(event: CareTeamFormed, ctx: Context) -> None:
    await care_team.formed(ctx, event)


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: Context) -> None:
    await care_team.ended(ctx, event)


@subscriptions.on(CareTeamMemberJoined)
async def member_joined(event: CareTeamMemberJoined, ctx: Context) -> None:
    await care_team.member_joined(ctx, event)


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: Context) -> None:
    await care_team.member_left(ctx, event)


@subscriptions.on(CarePlanUpdated)
async def care_plan_updated(event: CarePlanUpdated, ctx: Context) -> None:
    await plan_changes.care_plan_updated(ctx, event)


@subscriptions.on(ConsentGranted)
async def consent_granted(event: ConsentGranted, ctx: Context) -> None:
    await plan_changes.consent_granted(ctx, event)


@subscriptions.on(ConsentRevoked)
async def consent_revoked(event: ConsentRevoked, ctx: Context) -> None:
    await plan_changes.consent_revoked(ctx, event)
