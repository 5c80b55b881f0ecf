"""Use case: the free slots a caller may book."""

from __future__ import annotations

from datetime import datetime

from carebridge_booking import domain, store
from carebridge_booking.access import treats_on
from carebridge_booking.settings import BookingSettings
from carebridge_contracts.events.common import VisitType
from carebridge_shared.auth import Principal, Target, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection


async def free(
    ctx: ServiceContext[BookingSettings],
    rules: domain.BookingRules,
    caller: Principal,
    *,
    state: str,
    visit_type: VisitType,
    start: datetime,
    end: datetime,
    now: datetime,
    clinician_id: str | None,
    patient_id: str | None,
) -> list[tuple[str, domain.Interval]]:
    """(clinician id, slot) of active clinicians of the right role, licensed in `state` on the
    slot date, in [start, end) up to the horizon; by start, then clinician.

    With `patient_id` (the patient, a clinician who treats them, a coordinator), therapy
    intakes are offered only with the therapist(s) referral matched the patient with, and
    therapy sessions only with a therapist who held their intake.
    """
    length = rules.lengths.of(visit_type)
    searchable_end = min(end, now + rules.horizon)
    async with ctx.pool.acquire() as conn:
        candidates = await _bookable(
            conn, caller, state, visit_type, start, clinician_id=clinician_id, patient_id=patient_id
        )
        busy = await store.busy_intervals(
            conn, [c.id for c in candidates], start, searchable_end + length
        )
    found = [
        (clinician.id, slot)
        for clinician in candidates
        for slot in domain.free_slots(
            clinician,
            state=state,
            length=length,
            step=rules.slot_step,
            start=start,
            end=searchable_end,
            now=now,
            busy=busy.get(clinician.id, []),
        )
    ]
    found.sort(key=lambda item: (item[1].start, item[0]))
    return found


async def _bookable(
    conn: Connection,
    caller: Principal,
    state: str,
    visit_type: VisitType,
    start: datetime,
    *,
    clinician_id: str | None,
    patient_id: str | None,
) -> list[domain.Clinician]:
    """Active clinicians of the visit's role licensed in `state` at `start`; with a patient,
    only those the patient may book this visit with."""
    candidates = await store.list_clinicians(
        conn,
        state=state,
        role=domain.ROLE_FOR_VISIT[visit_type],
        active=True,
        licensed_at=start,
        clinician_id=clinician_id,  # one clinician's slots: parse only that one
    )
    if patient_id is None:
        return candidates
    await require_patient_access(
        caller,
        patient_id,
        treats_on(conn),
        staff=("coordinator",),
        target=Target("slots", None, patient_id),
    )
    standing = await store.patient_standing(conn, patient_id)
    return [c for c in candidates if domain.offered_to(standing, visit_type, c.id)]
