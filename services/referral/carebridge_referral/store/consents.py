"""The patient's consents, one per scope."""

from __future__ import annotations

from typing import Any, cast

import asyncpg

from carebridge_referral import domain
from carebridge_shared.db import Connection

PLAN_SCOPE = "care_plan_sharing"

_CONSENT_COLUMNS = "patient_id, scope, consent_id, status, granted_at, revoked_at"


def _consent(row: asyncpg.Record) -> domain.Consent:
    return domain.Consent(**cast(dict[str, Any], dict(row)))


async def get_consent(
    conn: Connection, patient_id: str, scope: str, *, lock: str = ""
) -> domain.Consent | None:
    """The current consent; `lock` is "", "FOR SHARE" or "FOR UPDATE"."""
    assert lock in ("", "FOR SHARE", "FOR UPDATE")
    row = await conn.fetchrow(
        f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE patient_id = $1 AND scope = $2 {lock}",
        patient_id,
        scope,
    )
    return None if row is None else _consent(row)


async def list_consents(conn: Connection, patient_id: str) -> list[domain.Consent]:
    rows = await conn.fetch(
        f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE patient_id = $1 ORDER BY scope",
        patient_id,
    )
    return [_consent(row) for row in rows]


async def save_consent(conn: Connection, consent: domain.Consent) -> None:
    await conn.execute(
        f"INSERT INTO consents ({_CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (patient_id, scope) DO UPDATE SET consent_id = EXCLUDED.consent_id,"
        " status = EXCLUDED.status, granted_at = EXCLUDED.granted_at,"
        " revoked_at = EXCLUDED.revoked_at",
        consent.patient_id,
        consent.scope,
        consent.consent_id,
        consent.status,
        consent.granted_at,
        consent.revoked_at,
    )
