"""HTTP API of the notification service: contacts (PHI, kept here only) and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Self

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from carebridge_contracts.events.common import Channel, OpaqueId
from carebridge_notification import store
from carebridge_notification.domain.planning import DeliveryKind, DeliveryStatus, RecipientKind
from carebridge_notification.settings import NotificationSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, allow, forbidden
from carebridge_shared.clock import OffsetClock
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.refusals import not_found, refuse
from carebridge_shared.service import service_context

router = APIRouter(prefix="/v1", tags=["notification"])
dev_router = APIRouter(prefix="/v1/_dev", tags=["dev"], dependencies=[Depends(allow("ops"))])

Context = Annotated[ServiceContext[NotificationSettings], Depends(service_context)]
ContactCaller = Annotated[Principal, Depends(allow("patient", "clinician", "coordinator"))]
Ops = Annotated[Principal, Depends(allow("ops"))]


def _may_reach_contact(
    ctx: ServiceContext[NotificationSettings],
    caller: Principal,
    kind: RecipientKind,
    recipient_id: str,
) -> None:
    """Contact details are PHI: a person reaches only their own; a coordinator keeps the
    clinicians' (the practice's staff directory). The on-call recipients are nobody's to
    change here: only ops set them, through /v1/on-call-route (ADR 0015)."""
    target = Target(f"{kind}_contact", recipient_id, recipient_id if kind == "patient" else None)
    if kind == "clinician" and recipient_id in ctx.settings.on_call_ids:
        raise forbidden(
            "on_call_route_ops_only",
            "Urgent safety alerts go to the on-call route: ops set it with PUT /v1/on-call-route.",
            caller,
            target,
        )
    if caller.role == kind and caller.sub == recipient_id:
        return
    if kind == "clinician" and caller.role == "coordinator":
        return
    raise forbidden(
        "not_self", "Only the person themselves may reach their contact details.", caller, target
    )


async def _audit_contact(
    conn: Connection, caller: Principal, action: audit.Action, kind: str, recipient_id: str
) -> None:
    patient = recipient_id if kind == "patient" else None
    await audit.record(conn, caller, action, f"{kind}_contact", recipient_id, patient)


# Deliberately simple: one '@', no whitespace, no header-breaking characters.
# No control characters either: PostgreSQL text cannot hold NUL (the fuzzer sent one: a 500).
EmailAddress = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=r"^[^@\s<>,;:\"()\[\]\\\x00-\x1f\x7f]+@[A-Za-z0-9.-]+$",
    ),
]
PhoneNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ().-]{4,24}$")
]


class ContactIn(BaseModel):
    """An e-mail address and/or a phone; `preferred_channel` set here wins over the one a patient
    chose at intake (AssessmentCompleted), and an omitted one keeps what is stored."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    preferred_channel: Channel | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.email is None and self.phone is None:
            raise ValueError("give an email or a phone")
        return self


class ContactOut(BaseModel):
    recipient_kind: RecipientKind
    recipient_id: str
    email: str | None
    phone: str | None
    preferred_channel: Channel
    channel_source: str
    updated_at: datetime


def _contact_out(contact: store.Contact) -> ContactOut:
    return ContactOut(
        recipient_kind=contact.recipient_kind,
        recipient_id=contact.recipient_id,
        email=contact.email,
        phone=contact.phone,
        preferred_channel=contact.preferred_channel,
        channel_source=contact.channel_source,
        updated_at=contact.updated_at,
    )


@router.put("/contacts/{recipient_kind}/{recipient_id}")
async def put_contact(
    recipient_kind: RecipientKind,
    recipient_id: OpaqueId,
    body: ContactIn,
    ctx: Context,
    caller: ContactCaller,
) -> ContactOut:
    _may_reach_contact(ctx, caller, recipient_kind, recipient_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        contact = await store.put_contact(
            conn,
            recipient_kind,
            recipient_id,
            email=body.email,
            phone=body.phone,
            preferred_channel=body.preferred_channel,
        )
        await _audit_contact(conn, caller, "update", recipient_kind, recipient_id)
    return _contact_out(contact)


@router.get("/contacts/{recipient_kind}/{recipient_id}")
async def get_contact(
    recipient_kind: RecipientKind, recipient_id: OpaqueId, ctx: Context, caller: ContactCaller
) -> ContactOut:
    _may_reach_contact(ctx, caller, recipient_kind, recipient_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        contact = await store.get_contact(conn, recipient_kind, recipient_id)
        if contact is None:
            raise not_found("contact")
        await _audit_contact(conn, caller, "read", recipient_kind, recipient_id)
    return _contact_out(contact)


@router.delete("/contacts/{recipient_kind}/{recipient_id}", status_code=204)
async def delete_contact(
    recipient_kind: RecipientKind, recipient_id: OpaqueId, ctx: Context, caller: ContactCaller
) -> Response:
    _may_reach_contact(ctx, caller, recipient_kind, recipient_id)
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await store.delete_contact(conn, recipient_kind, recipient_id):
            raise not_found("contact")
        await _audit_contact(conn, caller, "delete", recipient_kind, recipient_id)
    return Response(status_code=204)


class DeliveryOut(BaseModel):
    """A delivery as ops see it: ids, codes and times, never an address or the message text."""

    id: uuid.UUID
    cause_event_id: uuid.UUID
    cause_event_type: str
    patient_id: str
    appointment_id: uuid.UUID | None
    recipient_kind: RecipientKind
    recipient_id: str
    channel: Channel
    template: str
    kind: DeliveryKind
    status: DeliveryStatus
    priority: int
    due_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error_code: str | None
    sent_at: datetime | None
    failed_at: datetime | None


@router.get("/deliveries")
async def list_deliveries(
    ctx: Context,
    _caller: Ops,
    patient_id: Annotated[OpaqueId | None, Query()] = None,
    appointment_id: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeliveryOut]:
    if patient_id is None and appointment_id is None:
        raise refuse("patient_or_appointment_required", "Give patient_id or appointment_id.", 422)
    async with ctx.pool.acquire() as conn:
        deliveries = await store.list_deliveries(
            conn, patient_id=patient_id, appointment_id=appointment_id, limit=limit
        )
    return [
        DeliveryOut(
            id=d.id,
            cause_event_id=d.cause_event_id,
            cause_event_type=d.cause_event_type,
            patient_id=d.patient_id,
            appointment_id=d.appointment_id,
            recipient_kind=d.recipient_kind,
            recipient_id=d.recipient_id,
            channel=d.channel,
            template=d.template,
            kind=d.kind,
            status=d.status,
            priority=d.priority,
            due_at=d.due_at,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_error_code=d.last_error_code,
            sent_at=d.sent_at,
            failed_at=d.failed_at,
        )
        for d in deliveries
    ]


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_seconds: Annotated[float, Field(ge=0, le=10 * 365 * 86400)]


class ClockOut(BaseModel):
    now: datetime
    offset_seconds: float


def _dev_clock(ctx: ServiceContext[NotificationSettings]) -> OffsetClock:
    if not isinstance(ctx.clock, OffsetClock):
        raise not_found("dev_clock")
    return ctx.clock


def _clock_out(clock: OffsetClock) -> ClockOut:
    return ClockOut(now=clock.now(), offset_seconds=clock.offset.total_seconds())


@dev_router.get("/clock")
async def get_clock(ctx: Context) -> ClockOut:
    return _clock_out(_dev_clock(ctx))


@dev_router.post("/clock")
async def advance_clock(body: ClockAdvance, ctx: Context) -> ClockOut:
    """Move the service's time forward (only with dev_clock): due reminders then go out."""
    clock = _dev_clock(ctx)
    clock.advance(timedelta(seconds=body.advance_seconds))
    return _clock_out(clock)
