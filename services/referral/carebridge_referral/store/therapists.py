"""The therapist roster, each with their load (active care teams)."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from carebridge_referral import domain
from carebridge_shared.db import Connection

_THERAPIST_COLUMNS = """
    t.id, t.licence_states, t.modalities, t.capacity, t.active,
    (SELECT count(*) FROM care_teams c
     WHERE c.therapist_id = t.id AND c.status = 'active')::int AS load
"""


def _therapist(row: asyncpg.Record) -> tuple[domain.Therapist, int]:
    therapist = domain.Therapist(
        id=row["id"],
        licence_states=frozenset(row["licence_states"]),
        modalities=frozenset(row["modalities"]),
        capacity=row["capacity"],
        active=row["active"],
    )
    return therapist, row["load"]


def loads_of(rows: list[tuple[domain.Therapist, int]]) -> Mapping[str, int]:
    return {therapist.id: load for therapist, load in rows}


async def list_therapists(
    conn: Connection,
    *,
    state: str | None = None,
    modality: str | None = None,
    active: bool | None = None,
    for_update: bool = False,
) -> list[tuple[domain.Therapist, int]]:
    """Therapists with their load (active care teams), by id."""
    lock = " FOR UPDATE OF t" if for_update else ""
    rows = await conn.fetch(
        f"SELECT {_THERAPIST_COLUMNS} FROM therapists t"
        " WHERE ($1::text IS NULL OR $1 = ANY(t.licence_states))"
        " AND ($2::text IS NULL OR $2 = ANY(t.modalities))"
        " AND ($3::boolean IS NULL OR t.active = $3)"
        f" ORDER BY t.id{lock}",
        state,
        modality,
        active,
    )
    return [_therapist(row) for row in rows]


async def get_therapist(conn: Connection, therapist_id: str) -> tuple[domain.Therapist, int] | None:
    row = await conn.fetchrow(
        f"SELECT {_THERAPIST_COLUMNS} FROM therapists t WHERE t.id = $1", therapist_id
    )
    return None if row is None else _therapist(row)


async def upsert_therapist(
    conn: Connection, therapist: domain.Therapist, *, replace: bool = True
) -> bool:
    """Create the therapist, or replace it (`replace`) or leave it as it is; True if created."""
    conflict = (
        "DO UPDATE SET licence_states = EXCLUDED.licence_states,"
        " modalities = EXCLUDED.modalities, capacity = EXCLUDED.capacity,"
        " active = EXCLUDED.active, updated_at = now()"
        if replace
        else "DO NOTHING"
    )
    created = await conn.fetchval(
        "INSERT INTO therapists (id, licence_states, modalities, capacity, active)"
        f" VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) {conflict} RETURNING (xmax = 0)",
        therapist.id,
        sorted(therapist.licence_states),
        sorted(therapist.modalities),
        therapist.capacity,
        therapist.active,
    )
    return bool(created)
