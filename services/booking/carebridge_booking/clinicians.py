"""Use cases of the clinician directory: who may be booked, where and for what."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from carebridge_booking import domain, store
from carebridge_booking.models import ClinicianBody, ClinicianPatch
from carebridge_booking.settings import BookingSettings
from carebridge_shared.context import ServiceContext
from carebridge_shared.refusals import not_found


async def list_(
    ctx: ServiceContext[BookingSettings],
    *,
    state: str | None,
    role: str | None,
    active: bool | None,
) -> list[domain.Clinician]:
    """Clinicians, by id; with `state`, those holding a licence there that is valid now."""
    async with ctx.pool.acquire() as conn:
        return await store.list_clinicians(
            conn, state=state, role=role, active=active, licensed_at=ctx.clock.now()
        )


async def get(ctx: ServiceContext[BookingSettings], clinician_id: str) -> domain.Clinician:
    async with ctx.pool.acquire() as conn:
        clinician = await store.get_clinician(conn, clinician_id)
    if clinician is None:
        raise not_found("clinician")
    return clinician


async def put(ctx: ServiceContext[BookingSettings], clinician: domain.Clinician) -> bool:
    """Create or replace the clinician; True if created."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        return await store.upsert_clinician(conn, clinician)


async def patch(
    ctx: ServiceContext[BookingSettings], clinician_id: str, patch: ClinicianPatch
) -> domain.Clinician:
    """Change some fields; the result is validated as a whole clinician (422 if it is not)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        current = await store.get_clinician(conn, clinician_id)
        if current is None:
            raise not_found("clinician")
        merged: dict[str, Any] = {
            **ClinicianBody.from_domain(current).model_dump(),
            **patch.model_dump(exclude_unset=True),
        }
        try:
            body = ClinicianBody.model_validate(merged)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        clinician = body.to_domain(clinician_id)
        await store.upsert_clinician(conn, clinician)
    return clinician
