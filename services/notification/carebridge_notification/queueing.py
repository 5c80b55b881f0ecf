"""Queueing a plan on the handler's transaction: the write path every event use case ends in."""

from __future__ import annotations

import uuid

from carebridge_contracts.events.common import Channel
from carebridge_notification import store
from carebridge_notification.domain import planning, routing
from carebridge_notification.settings import NotificationSettings
from carebridge_shared.consumer import EventContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


def cause_of_event(
    ctx: EventContext[NotificationSettings], appointment_id: uuid.UUID | None
) -> store.Cause:
    """The event being handled, as the cause of the deliveries it queues."""
    envelope = ctx.envelope
    return store.Cause(
        event_id=envelope.event_id,
        event_type=envelope.type,
        correlation_id=envelope.correlation_id,
        patient_id=envelope.subject,
        appointment_id=appointment_id,
    )


async def queue_plan(
    ctx: EventContext[NotificationSettings],
    plan: planning.Plan,
    appointment_id: uuid.UUID | None,
    *,
    cause: store.Cause | None = None,
) -> int:
    """Write the plan's effect on the handler's connection (already inside its transaction):
    cancel the appointment's pending deliveries if the plan says so, then add its deliveries,
    each under the channel its recipient's contact gives (contacts read, and deliveries added,
    in one statement each). `cause` defaults to the event being
    handled; a member's catch-up names an earlier one. Returns how many deliveries were added."""
    cancelled = 0
    if plan.cancel_pending and appointment_id is not None:
        cancelled = await store.cancel_pending(ctx.conn, appointment_id, ctx.envelope.event_id)
    planned: list[tuple[planning.PlannedDelivery, Channel]] = []
    if plan.deliveries:
        recipients = [(d.recipient_kind, d.recipient_id) for d in plan.deliveries]
        contacts = await store.get_contacts(ctx.conn, recipients)
        for delivery, recipient in zip(plan.deliveries, recipients, strict=True):
            contact = contacts.get(recipient)
            planned.append((delivery, routing.planned_channel(contact.info if contact else None)))
    cause = cause or cause_of_event(ctx, appointment_id)
    added = await store.add_deliveries(ctx.conn, cause, planned)
    log.info(
        "deliveries_planned",
        event_type=ctx.envelope.type,
        event_id=str(ctx.envelope.event_id),
        cause_event_id=str(cause.event_id),
        added=added,
        cancelled=cancelled,
    )
    return added
