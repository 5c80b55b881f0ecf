"""Care teams: formed by a match, ended with their referral."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

import asyncpg

from carebridge_referral import domain
from carebridge_shared.db import Connection

_CARE_TEAM_COLUMNS = (
    "id, patient_id, referral_id, psychiatrist_id, therapist_id, status, formed_at,"
    " end_reason, ended_at"
)


def _care_team(row: asyncpg.Record) -> domain.CareTeam:
    return domain.CareTeam(**cast(dict[str, Any], dict(row)))


async def insert_care_team(conn: Connection, team: domain.CareTeam) -> None:
    await conn.execute(
        f"INSERT INTO care_teams ({_CARE_TEAM_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        team.id,
        team.patient_id,
        team.referral_id,
        team.psychiatrist_id,
        team.therapist_id,
        team.status,
        team.formed_at,
        team.end_reason,
        team.ended_at,
    )


async def active_care_team(
    conn: Connection, patient_id: str, *, lock: str = ""
) -> domain.CareTeam | None:
    """The patient's active team; `lock` is "", "FOR SHARE" or "FOR UPDATE"."""
    assert lock in ("", "FOR SHARE", "FOR UPDATE")
    row = await conn.fetchrow(
        f"SELECT {_CARE_TEAM_COLUMNS} FROM care_teams"
        f" WHERE patient_id = $1 AND status = 'active' {lock}",
        patient_id,
    )
    return None if row is None else _care_team(row)


async def set_team_psychiatrist(
    conn: Connection, care_team_id: UUID, psychiatrist_id: str | None
) -> None:
    await conn.execute(
        "UPDATE care_teams SET psychiatrist_id = $2 WHERE id = $1", care_team_id, psychiatrist_id
    )


async def end_care_team(
    conn: Connection, care_team_id: UUID, reason: str, now: datetime
) -> domain.CareTeam | None:
    """End an active team; None when it had already ended."""
    row = await conn.fetchrow(
        "UPDATE care_teams SET status = 'ended', end_reason = $2, ended_at = $3"
        f" WHERE id = $1 AND status = 'active' RETURNING {_CARE_TEAM_COLUMNS}",
        care_team_id,
        reason,
        now,
    )
    return None if row is None else _care_team(row)
