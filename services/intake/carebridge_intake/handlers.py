"""Event subscribers of the intake service: who treats whom, and through which record, so that
only a patient's current clinicians may read their assessments (ADR 0012, ADR 0015).

A visit makes its clinician treat the patient until it is cancelled; a care team makes its
members treat the patient until the team ends or the member leaves.
"""

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
from carebridge_intake import store
from carebridge_intake.settings import IntakeSettings
from carebridge_shared.consumer import EventContext, Subscriptions

VisitGoesOn = AppointmentBooked | AppointmentRescheduled | AppointmentCompleted | AppointmentNoShow


subscriptions = Subscriptions[IntakeSettings]()


async def visit(event: VisitGoesOn, ctx: EventContext[IntakeSettings]) -> None:
    await store.relate(
        ctx.conn, event.patient_id, event.clinician_id, "appointment", str(event.appointment_id)
    )


@subscriptions.on(AppointmentBooked)
async def appointment_booked(event: AppointmentBooked, ctx: EventContext[IntakeSettings]) -> None:
    await visit(event, ctx)


@subscriptions.on(AppointmentRescheduled)
async def appointment_rescheduled(
    event: AppointmentRescheduled, ctx: EventContext[IntakeSettings]
) -> None:
    await visit(event, ctx)


@subscriptions.on(AppointmentCompleted)
async def appointment_completed(
    event: AppointmentCompleted, ctx: EventContext[IntakeSettings]
) -> None:
    await visit(event, ctx)


@subscriptions.on(AppointmentNoShow)
async def appointment_no_show(event: AppointmentNoShow, ctx: EventContext[IntakeSettings]) -> None:
    await visit(event, ctx)


@subscriptions.on(AppointmentCancelled)
async def appointment_cancelled(
    event: AppointmentCancelled, ctx: EventContext[IntakeSettings]
) -> None:
    await store.end_source(
        ctx.conn,
        event.patient_id,
        "appointment",
        str(event.appointment_id),
        [event.clinician_id],
    )


@subscriptions.on(CareTeamFormed)
async def care_team_formed(event: CareTeamFormed, ctx: EventContext[IntakeSettings]) -> None:
    for clinician in (event.psychiatrist_id, event.therapist_id):
        if clinician is not None:
            await store.relate(
                ctx.conn, event.patient_id, clinician, "care_team", str(event.care_team_id)
            )


@subscriptions.on(CareTeamMemberJoined)
async def member_joined(event: CareTeamMemberJoined, ctx: EventContext[IntakeSettings]) -> None:
    await store.relate(
        ctx.conn, event.patient_id, event.clinician_id, "care_team", str(event.care_team_id)
    )


@subscriptions.on(CareTeamMemberLeft)
async def member_left(event: CareTeamMemberLeft, ctx: EventContext[IntakeSettings]) -> None:
    await store.end_source(
        ctx.conn, event.patient_id, "care_team", str(event.care_team_id), [event.clinician_id]
    )


@subscriptions.on(CareTeamEnded)
async def care_team_ended(event: CareTeamEnded, ctx: EventContext[IntakeSettings]) -> None:
    team = str(event.care_team_id)
    named = {c for c in (event.therapist_id, event.psychiatrist_id) if c is not None}
    members = set(await store.members_of(ctx.conn, event.patient_id, team)) | named
    await store.end_source(ctx.conn, event.patient_id, "care_team", team, sorted(members))
