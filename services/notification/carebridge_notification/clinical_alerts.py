"""Use cases that alert clinicians: a safety risk (to the on-call route) and worsening symptoms
(to the care team)."""

from __future__ import annotations

from carebridge_contracts import SafetyRiskFlagged, SymptomsWorsened
from carebridge_notification import store
from carebridge_notification.domain import membership, planning
from carebridge_notification.queueing import queue_plan
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


async def safety_risk_flagged(
    ctx: EventContext[NotificationSettings], event: SafetyRiskFlagged
) -> None:
    """An urgent alert to the on-call clinician id (the dispatcher escalates it if unsent)."""
    on_call = ctx.settings.on_call_clinician_id
    await queue_plan(ctx, planning.plan_safety_alert(event, on_call, ctx.clock.now()), None)


async def symptoms_worsened(
    ctx: EventContext[NotificationSettings], event: SymptomsWorsened
) -> None:
    """Each member of the care team is told once (the therapist only while the patient
    shares the plan with them, where the trend is)."""
    await store.lock_care_team(ctx.conn, event.patient_id)
    team = await store.care_team(ctx.conn, event.patient_id)
    sharing = await store.get_consent(ctx.conn, event.patient_id, membership.CARE_PLAN_SHARING)
    told = membership.consented(team, sharing)
    if not told:
        log.info("symptoms_worsened_no_care_team", event_id=str(ctx.envelope.event_id))
    await queue_plan(ctx, planning.plan_symptoms_worsened(event, told, ctx.clock.now()), None)
