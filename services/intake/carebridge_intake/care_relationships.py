"""Use cases of who treats whom, learnt from booking's and referral's events, so that only a
patient's current clinicians may read their assessments (ADR 0012, ADR 0015).

A visit makes its clinician treat the patient until it is cancelled; a care team makes its
members treat the patient until the team ends or the member leaves. Each runs in the
consumer's transaction (`ctx.conn`).
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
from carebridge_shared.consumer import EventContext

Context = EventContext[IntakeSettings]
VisitGoesOn = AppointmentBooked | AppointmentRescheduled | AppointmentCompleted | AppointmentNoShow


async def visit_goes_on(ctx: Context, event: VisitGoesOn) -> None:
    await store.relate(
        ctx.conn, event.patient_id, event.clinician_id, "appointment", str(event.appointment_id)
    )


async def visit_cancelled(ctx: Context, event: AppointmentCancelled) -> None:
    await store.end_source(
        ctx.conn, event.patient_id, "appointment", str(event.appointment_id), [event.clinician_id]
    )


async def care_team_formed(ctx: Context, event: CareTeamFormed) -> None:
    for clinician in (event.psychiatrist_id, event.therapist_id):
        if clinician is not None:
            await store.relate(
                ctx.conn, event.patient_id, clinician, "care_team", str(event.care_team_id)
            )


async def member_joined(ctx: Context, event: CareTeamMemberJoined) -> None:
    await store.relate(
        ctx.conn, event.patient_id, event.clinician_id, "care_team", str(event.care_team_id)
    )


async def member_left(ctx: Context, event: CareTeamMemberLeft) -> None:
    await store.end_source(
        ctx.conn, event.patient_id, "care_team", str(event.care_team_id), [event.clinician_id]
    )


async def care_team_ended(ctx: Context, event: CareTeamEnded) -> None:
    """Every member the team ever had stops treating the patient through it: those the event
    names and those who joined it later."""
    team = str(event.care_team_id)
    named = {c for c in (event.therapist_id, event.psychiatrist_id) if c is not None}
    members = set(await store.members_of(ctx.conn, event.patient_id, team)) | named
    await store.end_source(ctx.conn, event.patient_id, "care_team", team, sorted(members))
