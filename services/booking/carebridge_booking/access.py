"""Who treats whom, answered from booking's own tables (ADR 0015)."""

from __future__ import annotations

from carebridge_booking import store
from carebridge_shared.auth import Treats
from carebridge_shared.db import Connection


def treats_on(conn: Connection) -> Treats:
    """`treats(clinician_id, patient_id)`: a visit that is not cancelled, or an active
    therapist match (`store.treats`)."""

    async def treats(clinician_id: str, patient_id: str) -> bool:
        return await store.treats(conn, clinician_id, patient_id)

    return treats
