"""The on-call route: where urgent safety alerts go (ADR 0015).

Safety alerts are queued for the recipient ids `on_call_clinician_id` (primary) and, when the
primary cannot be reached, `on_call_escalation_id`. Their addresses are not contact details
anyone can edit: only ops set, read or delete them (`/v1/on-call-route`), every change and read
is in the audit log, and the contact routes refuse those ids. Without a route the service is
not ready (`/readyz` check `on_call_route`). A dev stack or a test sets one at start with the
bootstrap settings, applied only when none exists and audited as set by the bootstrap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict

from carebridge_notification import store
from carebridge_notification.api import EmailAddress
from carebridge_notification.domain.routing import ContactInfo
from carebridge_notification.settings import NotificationSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, allow
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found
from carebridge_shared.service import service_context

log = get_logger(__name__)

RESOURCE = "on_call_route"
READINESS_CHECK = "on_call_route"
BOOTSTRAP = Principal(sub="notification-bootstrap", role="ops")

router = APIRouter(prefix="/v1", tags=["on-call"])
Context = Annotated[ServiceContext[NotificationSettings], Depends(service_context)]
Ops = Annotated[Principal, Depends(allow("ops"))]


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailAddress  # the contact routes' rule: one address is valid in both places


class OnCallRouteIn(BaseModel):
    """Who gets urgent safety alerts: `primary` first; `escalation` when the primary cannot be
    sent to (no route, an SMTP failure), and for every retry that follows."""

    model_config = ConfigDict(extra="forbid")

    primary: Recipient
    escalation: Recipient


class OnCallRouteOut(BaseModel):
    primary: Recipient
    escalation: Recipient
    set_by_sub: str
    set_by_role: str
    updated_at: datetime


def _out(route: store.OnCallRoute) -> OnCallRouteOut:
    return OnCallRouteOut(
        primary=Recipient(email=route.primary_email),
        escalation=Recipient(email=route.escalation_email),
        set_by_sub=route.set_by_sub,
        set_by_role=route.set_by_role,
        updated_at=route.updated_at,
    )


async def _audit(conn: Connection, who: Principal, action: audit.Action, ids: str) -> None:
    await audit.record(conn, who, action, RESOURCE, ids, None)


def _route_ids(settings: NotificationSettings) -> str:
    return f"{settings.on_call_clinician_id},{settings.on_call_escalation_id}"


@router.put("/on-call-route")
async def put_route(ctx: Context, caller: Ops, body: OnCallRouteIn) -> OnCallRouteOut:
    """Set where urgent safety alerts go (ops only; audited)."""
    settings = ctx.settings
    primary, escalation = body.primary.email, body.escalation.email
    async with ctx.pool.acquire() as conn, conn.transaction():
        existed = await store.get_on_call_route(conn, lock=True) is not None
        route = await store.put_on_call_route(
            conn, primary, escalation, set_by_sub=caller.sub, set_by_role=caller.role
        )
        assert route is not None
        await _audit(conn, caller, "update" if existed else "create", _route_ids(settings))
    log.info("on_call_route_set", set_by_sub=caller.sub, replaced=existed)
    return _out(route)


@router.get("/on-call-route")
async def get_route(ctx: Context, caller: Ops) -> OnCallRouteOut:
    """Where urgent safety alerts go now (ops only; the read is audited)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        route = await store.get_on_call_route(conn)
        if route is None:
            raise not_found("on_call_route")
        await _audit(conn, caller, "read", _route_ids(ctx.settings))
    return _out(route)


@router.delete("/on-call-route", status_code=204)
async def delete_route(ctx: Context, caller: Ops) -> Response:
    """Remove the route (ops only; audited): alerts wait, retried and escalated, and the
    service reports not ready until a route is set again."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if not await store.delete_on_call_route(conn):
            raise not_found("on_call_route")
        await _audit(conn, caller, "delete", _route_ids(ctx.settings))
    log.warning("on_call_route_deleted", set_by_sub=caller.sub)
    return Response(status_code=204)


async def route_problem(ctx: ServiceContext[NotificationSettings]) -> str | None:
    """Readiness: None while a route exists."""
    async with ctx.pool.acquire() as conn:
        if await store.get_on_call_route(conn) is None:
            return "no on-call route: ops must PUT /v1/on-call-route (safety alerts wait)"
    return None


async def bootstrap_route(ctx: ServiceContext[NotificationSettings]) -> None:
    """Startup: set the route from the bootstrap settings when none exists (audited)."""
    settings = ctx.settings
    primary = settings.on_call_bootstrap_primary_email
    if not primary:
        return
    escalation = settings.on_call_bootstrap_escalation_email or primary
    async with ctx.pool.acquire() as conn, conn.transaction():
        route = await store.put_on_call_route(
            conn,
            primary,
            escalation,
            set_by_sub=BOOTSTRAP.sub,
            set_by_role=BOOTSTRAP.role,
            only_if_missing=True,
        )
        if route is not None:
            await _audit(conn, BOOTSTRAP, "create", _route_ids(settings))
    log.info("on_call_route_bootstrap", applied=route is not None)


def contact_on_route(
    route: store.OnCallRoute | None, settings: NotificationSettings, recipient_id: str
) -> ContactInfo | None:
    """The address `route` gives an on-call recipient id (None without a route)."""
    if route is None:
        return None
    email = (
        route.primary_email
        if recipient_id == settings.on_call_clinician_id
        else route.escalation_email
    )
    return ContactInfo(email=email, phone=None, preferred_channel="email")
