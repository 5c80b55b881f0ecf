"""The matching queue: its lock, the referrals waiting in it, and what matching decided."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from carebridge_referral import domain
from carebridge_referral.store.consents import PLAN_SCOPE
from carebridge_referral.store.referrals import referral_columns
from carebridge_shared.db import Connection


async def lock_matching(conn: Connection) -> None:
    """Enter matching's critical section (see the `matching_lock` table); transaction-scoped.

    Take it first, before any other lock, in every transaction that may assign a therapist
    or change capacity, licences, modalities, consent or the queue.
    """
    await conn.execute("SELECT id FROM matching_lock WHERE id = 1 FOR UPDATE")


async def waiting_referrals(
    conn: Connection, only: UUID | None = None
) -> list[tuple[domain.Referral, bool]]:
    """The matching queue, locked: open referrals nobody took yet (or only the one with id
    `only`, if it is waiting), with the patient's care_plan_sharing consent."""
    rows = await conn.fetch(
        f"SELECT {referral_columns('r')},"
        " coalesce((SELECT k.status = 'granted' FROM consents k"
        "   WHERE k.patient_id = r.patient_id AND k.scope = $1), false) AS consent_granted"
        " FROM referrals r"
        " WHERE r.therapist_id IS NULL AND r.status IN ('active', 'on-hold')"
        " AND ($2::uuid IS NULL OR r.id = $2)"
        " ORDER BY r.created_at, r.id FOR UPDATE OF r",
        PLAN_SCOPE,
        only,
    )
    found: list[tuple[domain.Referral, bool]] = []
    for row in rows:
        values = dict(row)
        consent = bool(values.pop("consent_granted"))
        found.append((domain.Referral(**values), consent))
    return found


async def mark_matched(
    conn: Connection, referral_id: UUID, therapist_id: str, care_team_id: UUID, now: datetime
) -> None:
    await conn.execute(
        "UPDATE referrals SET status = 'active', hold_reason = NULL, therapist_id = $2,"
        " care_team_id = $3, matched_at = $4, updated_at = $4 WHERE id = $1",
        referral_id,
        therapist_id,
        care_team_id,
        now,
    )


async def mark_held(conn: Connection, referral_id: UUID, reason: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET status = 'on-hold', hold_reason = $2, updated_at = $3 WHERE id = $1",
        referral_id,
        reason,
        now,
    )
