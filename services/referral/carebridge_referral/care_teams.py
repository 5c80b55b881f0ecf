"""Use cases of care teams: booking's psychiatric visits keep the active team's psychiatrist
equal to the patient's current psychiatrist, telling every service when it changes
(CareTeamMemberJoined / CareTeamMemberLeft); and reading the active team.

A team formed without a psychiatrist gets one when referral learns of a psychiatric visit; a
newer visit with someone else replaces them; the last visit cancelled removes them. The
matching lock orders this with matching, so a team that is being formed is seen or waits
(ADR 0015).
"""

from __future__ import annotations

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from carebridge_referral import domain, store
from carebridge_referral.access import require_access
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target
from carebridge_shared.consumer import EventContext
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found

log = get_logger(__name__)

VisitEvent = (
    AppointmentBooked
    | AppointmentRescheduled
    | AppointmentCancelled
    | AppointmentCompleted
    | AppointmentNoShow
)


async def visit_changed(
    ctx: EventContext[ReferralSettings], event: VisitEvent, status: domain.VisitStatus
) -> None:
    """Record what booking says about a psychiatric visit (other visits do not count), and
    make the patient's active team (if any) name their current psychiatrist, with events."""
    if event.visit_type not in domain.PSYCHIATRIC_VISITS:
        return
    conn, patient_id = ctx.conn, event.patient_id
    # Matching forms teams under this lock: a team is either formed already (and follows
    # the visit below) or is formed afterwards with the visit in view.
    await store.lock_matching(conn)
    await store.record_visit(
        conn,
        appointment_id=event.appointment_id,
        patient_id=patient_id,
        psychiatrist_id=event.clinician_id,
        status=status,
        starts_at=event.starts_at,
    )
    team = await store.active_care_team(conn, patient_id, lock="FOR UPDATE")
    if team is None:
        return
    current = await store.current_psychiatrist(conn, patient_id)
    changes = domain.psychiatrist_change(team, current)
    if not changes:
        return
    await store.set_team_psychiatrist(conn, team.id, current)
    for change in changes:
        await ctx.publish(change)
    log.info(
        "care_team_psychiatrist_changed",
        care_team_id=str(team.id),
        previous=team.psychiatrist_id,
        current=current,
    )


async def get_active(
    ctx: ServiceContext[ReferralSettings], caller: Principal, patient_id: str
) -> domain.CareTeam:
    """The patient's active care team, for the patient, a clinician who treats them now and
    a coordinator (the read audited)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        await require_access(conn, caller, patient_id, Target("care_team", None, patient_id))
        team = await store.active_care_team(conn, patient_id)
        if team is None:
            raise not_found("care_team")
        await audit.record(conn, caller, "read", "care_team", str(team.id), patient_id)
    return team
