"""Who may reach a patient's records, answered from referral's own tables (ADR 0015)."""

from __future__ import annotations

from carebridge_referral import store
from carebridge_shared.auth import Principal, Target, Treats, require_patient_access
from carebridge_shared.db import Connection


def treats_on(conn: Connection) -> Treats:
    """`treats(clinician_id, patient_id)`: one of the patient's psychiatrists, or a member of
    their active care team (`store.treats`)."""

    async def treats(clinician_id: str, patient_id: str) -> bool:
        return await store.treats(conn, clinician_id, patient_id)

    return treats


async def require_access(
    conn: Connection,
    caller: Principal,
    patient_id: str,
    target: Target,
    *,
    coordinator: bool = True,
) -> None:
    """The patient themselves, a clinician who treats them now, and (unless told) a
    coordinator. Called before anything about the patient is looked up."""
    await require_patient_access(
        caller,
        patient_id,
        treats_on(conn),
        staff=("coordinator",) if coordinator else (),
        target=target,
    )
