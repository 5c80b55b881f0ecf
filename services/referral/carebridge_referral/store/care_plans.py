"""Care plans and their versions."""

from __future__ import annotations

import json

import asyncpg

from carebridge_referral import domain
from carebridge_referral.store.care_teams import active_care_team
from carebridge_referral.store.consents import PLAN_SCOPE, get_consent
from carebridge_referral.store.psychiatrists import current_psychiatrist
from carebridge_shared.db import Connection

_PLAN_COLUMNS = "patient_id, version, content::text AS content, author_id, author_role, updated_at"


def _plan(row: asyncpg.Record) -> domain.CarePlan:
    values = dict(row)
    values["content"] = json.loads(values["content"])
    return domain.CarePlan(**values)


async def plan_team(conn: Connection, patient_id: str) -> domain.PlanTeam:
    """Who may open the plan. Locks the consent and care team rows it read (FOR SHARE), so
    a revocation or a team's end waits for a write that was allowed, or is seen by it."""
    consent = await get_consent(conn, patient_id, PLAN_SCOPE, lock="FOR SHARE")
    team = await active_care_team(conn, patient_id, lock="FOR SHARE")
    if team is not None:
        psychiatrist = team.psychiatrist_id  # kept equal to the current one (care_teams.py)
    else:
        psychiatrist = await current_psychiatrist(conn, patient_id)
    return domain.PlanTeam(
        psychiatrist_id=psychiatrist,
        therapist_id=team.therapist_id if team is not None else None,
        consent_granted=consent is not None and consent.granted,
    )


async def get_plan(
    conn: Connection, patient_id: str, *, for_update: bool = False
) -> domain.CarePlan | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_PLAN_COLUMNS} FROM care_plans WHERE patient_id = $1{lock}", patient_id
    )
    return None if row is None else _plan(row)


async def save_plan(
    conn: Connection,
    plan: domain.CarePlan,
    *,
    changed: list[str],
) -> bool:
    """Write `plan` (its version is the new one) and its history row.

    For version 1 it inserts; False when another writer created the plan first.
    """
    content = json.dumps(dict(plan.content), sort_keys=True)
    if plan.version == 1:
        inserted = await conn.fetchval(
            "INSERT INTO care_plans (patient_id, version, content, author_id, author_role,"
            " updated_at) VALUES ($1, 1, $2::jsonb, $3, $4, $5)"
            " ON CONFLICT (patient_id) DO NOTHING RETURNING true",
            plan.patient_id,
            content,
            plan.author_id,
            plan.author_role,
            plan.updated_at,
        )
        if not inserted:
            return False
    else:
        await conn.execute(
            "UPDATE care_plans SET version = $2, content = $3::jsonb, author_id = $4,"
            " author_role = $5, updated_at = $6 WHERE patient_id = $1",
            plan.patient_id,
            plan.version,
            content,
            plan.author_id,
            plan.author_role,
            plan.updated_at,
        )
    await conn.execute(
        "INSERT INTO care_plan_versions (patient_id, version, content, changed_sections,"
        " author_id, author_role, created_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)",
        plan.patient_id,
        plan.version,
        content,
        changed,
        plan.author_id,
        plan.author_role,
        plan.updated_at,
    )
    return True
