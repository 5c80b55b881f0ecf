"""Referrals: one row each, the open one unique per patient (ONE_OPEN_REFERRAL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

import asyncpg

from carebridge_referral import domain
from carebridge_shared.db import Connection

REFERRAL_FIELDS = (
    "id",
    "patient_id",
    "state",
    "modality",
    "urgency",
    "requested_by",
    "requesting_clinician_id",
    "assessment_id",
    "status",
    "hold_reason",
    "therapist_id",
    "care_team_id",
    "created_at",
    "updated_at",
    "matched_at",
    "closed_at",
)


def referral_columns(alias: str = "") -> str:
    return ", ".join(f"{alias}.{f}" if alias else f for f in REFERRAL_FIELDS)


REFERRAL_COLUMNS = referral_columns()


def _referral(row: asyncpg.Record) -> domain.Referral:
    return domain.Referral(**cast(dict[str, Any], dict(row)))


async def insert_referral(conn: Connection, referral: domain.Referral) -> None:
    """Insert; raises `asyncpg.UniqueViolationError` (ONE_OPEN_REFERRAL) for a second open one."""
    await conn.execute(
        f"INSERT INTO referrals ({REFERRAL_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        referral.id,
        referral.patient_id,
        referral.state,
        referral.modality,
        referral.urgency,
        referral.requested_by,
        referral.requesting_clinician_id,
        referral.assessment_id,
        referral.status,
        referral.hold_reason,
        referral.therapist_id,
        referral.care_team_id,
        referral.created_at,
        referral.updated_at,
        referral.matched_at,
        referral.closed_at,
    )


async def take_over_referral(
    conn: Connection,
    referral_id: UUID,
    *,
    state: str,
    modality: str,
    urgency: str,
    requesting_clinician_id: str,
    now: datetime,
) -> None:
    """A psychiatrist's request replaces the terms of an unmatched intake-originated referral."""
    await conn.execute(
        "UPDATE referrals SET requested_by = 'psychiatrist', requesting_clinician_id = $2,"
        " state = $3, modality = $4, urgency = $5, updated_at = $6"
        " WHERE id = $1 AND therapist_id IS NULL",
        referral_id,
        requesting_clinician_id,
        state,
        modality,
        urgency,
        now,
    )


async def get_referral(
    conn: Connection, referral_id: UUID, *, for_update: bool = False
) -> domain.Referral | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {REFERRAL_COLUMNS} FROM referrals WHERE id = $1{lock}", referral_id
    )
    return None if row is None else _referral(row)


async def open_referral_for(conn: Connection, patient_id: str) -> domain.Referral | None:
    row = await conn.fetchrow(
        f"SELECT {REFERRAL_COLUMNS} FROM referrals"
        " WHERE patient_id = $1 AND status IN ('draft', 'active', 'on-hold')",
        patient_id,
    )
    return None if row is None else _referral(row)


async def referral_for_assessment(conn: Connection, assessment_id: UUID) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        "SELECT id FROM referrals WHERE assessment_id = $1", assessment_id
    )
    return found


async def list_referrals(
    conn: Connection,
    *,
    patient_id: str | None,
    status: str | None,
    therapist_id: str | None,
    limit: int,
) -> list[domain.Referral]:
    rows = await conn.fetch(
        f"SELECT {REFERRAL_COLUMNS} FROM referrals"
        " WHERE ($1::text IS NULL OR patient_id = $1)"
        " AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR therapist_id = $3)"
        " ORDER BY created_at, id LIMIT $4",
        patient_id,
        status,
        therapist_id,
        limit,
    )
    return [_referral(row) for row in rows]


async def close_referral(
    conn: Connection, referral_id: UUID, status: domain.ReferralStatus, now: datetime
) -> None:
    await conn.execute(
        "UPDATE referrals SET status = $2, hold_reason = NULL, closed_at = $3, updated_at = $3"
        " WHERE id = $1",
        referral_id,
        status,
        now,
    )
