"""The audit log: who read or changed which clinical record, and when (ADR 0012, ADR 0014).

Rows go into the service's own append-only `audit_log` table (shared migrations 0002, 0003) in
the transaction of the read or change they record, so a record is never shown or changed without
its row, and a failed change leaves none. Ids and codes only: never content, names or contacts.
The service's database role may only INSERT and SELECT there; a read of the trail itself is
recorded too (resource `audit_trail`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from carebridge_contracts.events.common import PatientId
from carebridge_shared.auth import Principal, allow
from carebridge_shared.context import ServiceContext
from carebridge_shared.correlation import current_client_correlation_id, current_correlation_id
from carebridge_shared.db import Connection
from carebridge_shared.service import service_context

# The resource type of a read of the audit trail itself.
AUDIT_TRAIL = "audit_trail"

Action = Literal[
    "read", "create", "update", "delete", "reschedule", "cancel", "complete", "no_show"
]


@dataclass(frozen=True, slots=True)
class Access:
    """One record a request touched."""

    resource_type: str
    resource_id: str
    patient_id: str | None


async def record(
    conn: Connection,
    principal: Principal,
    action: Action,
    resource_type: str,
    resource_id: str,
    patient_id: str | None,
) -> None:
    await record_many(conn, principal, action, [Access(resource_type, resource_id, patient_id)])


async def record_many(
    conn: Connection, principal: Principal, action: Action, accesses: Iterable[Access]
) -> None:
    """One row per record, all with this request's correlation id (the server's) and the
    caller's own one, when it sent an acceptable one."""
    correlation_id = current_correlation_id()
    client_correlation_id = current_client_correlation_id()
    rows = [
        (
            principal.sub,
            principal.role,
            action,
            a.resource_type,
            a.resource_id,
            a.patient_id,
            correlation_id,
            client_correlation_id,
        )
        for a in accesses
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO audit_log (actor_sub, actor_role, action, resource_type, resource_id,"
            " patient_id, correlation_id, client_correlation_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            rows,
        )


class AuditEventOut(BaseModel):
    id: int
    occurred_at: datetime
    actor_sub: str
    actor_role: str
    action: str
    resource_type: str
    resource_id: str
    patient_id: str | None
    correlation_id: uuid.UUID
    client_correlation_id: str | None


class AuditTrail(BaseModel):
    patient_id: str
    events: list[AuditEventOut]


async def trail(conn: Connection, patient_id: str, *, limit: int) -> list[AuditEventOut]:
    rows = await conn.fetch(
        "SELECT id, occurred_at, actor_sub, actor_role, action, resource_type, resource_id,"
        " patient_id, correlation_id, client_correlation_id"
        " FROM audit_log WHERE patient_id = $1 ORDER BY id LIMIT $2",
        patient_id,
        limit,
    )
    return [AuditEventOut.model_validate(dict(row)) for row in rows]


router = APIRouter(tags=["audit"])  # services mount it under their /v1 router


@router.get("/audit-events")
async def audit_events(
    ctx: Annotated[ServiceContext, Depends(service_context)],
    caller: Annotated[Principal, Depends(allow("coordinator", "ops"))],
    patient_id: PatientId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AuditTrail:
    """This service's audit trail of one patient's records, oldest first (ids only). The read
    is itself recorded (resource `audit_trail`), in the same transaction."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        events = await trail(conn, patient_id, limit=limit)
        await record(conn, caller, "read", AUDIT_TRAIL, patient_id, patient_id)
    return AuditTrail(patient_id=patient_id, events=events)
