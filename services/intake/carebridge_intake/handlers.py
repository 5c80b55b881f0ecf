"""Event subscribers of the intake service, each one line to its use case in
`care_relationships`: who treats whom, and through which record, so that only a patient's
current clinicians may read their assessments (ADR 0012, ADR 0015)."""

from __future__ import annotations

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
)
from carebridge_intake import care_relationships
from carebridge_intake.settings import IntakeSettings
from carebridge_shared.consumer import EventContext, Subscriptions

Context = EventContext[IntakeSettings]
subscriptions = Subscriptions[IntakeSettings]()


@subscriptions.on(AppointmentBooked)
async def appointment_booked(event: AppointmentBooked, ctx: Context) -> None:
    await care_relationships.visit_goes_on(ctx, event)


@subscriptions.on(AppointmentRescheduled)
async def appointment_rescheduled(event: AppointmentRescheduled, ctx: Context) -> None:
    await care_relationships.visit_goes_on(ctx, event)


@subscriptions.on(AppointmentCompleted)
async def appointment_completed(event: AppointmentCompleted, ctx: Context) -> None:
    await care_relationships.visit_goes_on(ctx, event)


@subscriptions.on(AppointmentNoShow)
async def appointment_no_show(event: AppointmentNoShow, ctx: Context) -> None:
    await care_relationships.visit_goes_on(ctx, event)


@subscriptions.on(AppointmentCancelled)
async def appointment_cancelled(event: AppointmentCancelled, ctx: Context) -> None:
    await care_relationships.visit_cancelled(ctx, event)


@subscriptions.on(CareTeamFormed)
async def care_team_formed(event: CareTeamFormed, ctx: Context) -> None:
    await care_relationships.care_team_formed(ctx, event)


@subscriptions.on(CareTeamMemberJoined)
async def member_joined(event: CareTeamMemberJoined, ctx: Context) -> None:
    await care_relationships.member_joined(ctx, event)


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: Context) -> None:
    await care_relationships.member_left(ctx, event)


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: Context) -> None:
    await care_relationships.care_team_ended(ctx, event)
