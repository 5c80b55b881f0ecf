"""Use cases that teach the patient at each step of care (once per patient and step)."""

from __future__ import annotations

from collections.abc import Mapping

from carebridge_contracts import AssessmentCompleted, TherapistRequested
from carebridge_notification import store
from carebridge_notification.domain import education, planning
from carebridge_notification.queueing import queue_plan
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


async def teach(
    ctx: EventContext[NotificationSettings],
    step: education.EducationStep,
    params: Mapping[str, str],
) -> None:
    """The step's education message to the patient, once per patient and step; the template
    version they get is recorded with it."""
    patient_id = ctx.envelope.subject
    delivery = education.education_delivery(step, patient_id, params, ctx.clock.now())
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
    await queue_plan(ctx, planning.Plan((delivery,)), None)


async def assessment_completed(
    ctx: EventContext[NotificationSettings], event: AssessmentCompleted
) -> None:
    """The channel the patient chose at intake, then what their bands mean."""
    await store.channel_from_assessment(ctx.conn, event.patient_id, event.preferred_channel)
    await teach(ctx, "assessment", {"phq9_band": event.phq9_band, "gad7_band": event.gad7_band})


async def therapist_requested(
    ctx: EventContext[NotificationSettings], event: TherapistRequested
) -> None:
    await teach(ctx, "referral", {"modality": event.modality})
