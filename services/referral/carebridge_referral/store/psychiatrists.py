"""The patient's psychiatrists, from booking's psychiatric visits, and who treats a patient now."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from carebridge_referral import domain
from carebridge_shared.db import Connection

# The patient's psychiatrists ($1), most recent visit first: the psychiatrist of every psychiatric
# visit that is not cancelled; and, only while referral knows no psychiatric visit of the patient
# at all, one carried over from before visits were kept (migration 0002).
PSYCHIATRISTS = """
    SELECT v.psychiatrist_id, v.starts_at AS seen_at, v.appointment_id::text AS tie
    FROM psychiatric_visits v WHERE v.patient_id = $1 AND v.status <> 'cancelled'
    UNION ALL
    SELECT c.psychiatrist_id, c.observed_at, '' FROM carried_over_psychiatrists c
    WHERE c.patient_id = $1
      AND NOT EXISTS (SELECT 1 FROM psychiatric_visits v WHERE v.patient_id = $1)
"""


async def record_visit(
    conn: Connection,
    *,
    appointment_id: UUID,
    patient_id: str,
    psychiatrist_id: str,
    status: domain.VisitStatus,
    starts_at: datetime,
) -> None:
    """What booking's latest event about a psychiatric visit says (events of one appointment
    arrive in order: one patient, one partition)."""
    await conn.execute(
        "INSERT INTO psychiatric_visits"
        " (appointment_id, patient_id, psychiatrist_id, status, starts_at)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (appointment_id) DO UPDATE SET psychiatrist_id = EXCLUDED.psychiatrist_id,"
        " status = EXCLUDED.status, starts_at = EXCLUDED.starts_at, updated_at = now()",
        appointment_id,
        patient_id,
        psychiatrist_id,
        status,
        starts_at,
    )


async def psychiatrists_of(conn: Connection, patient_id: str) -> list[str]:
    """The patient's psychiatrists, the current one (most recent visit) first."""
    rows = await conn.fetch(
        f"SELECT psychiatrist_id, max(seen_at) AS latest, max(tie) AS tie FROM ({PSYCHIATRISTS}) p"
        " GROUP BY psychiatrist_id ORDER BY latest DESC, tie DESC",
        patient_id,
    )
    return [row["psychiatrist_id"] for row in rows]


async def current_psychiatrist(conn: Connection, patient_id: str) -> str | None:
    found = await psychiatrists_of(conn, patient_id)
    return found[0] if found else None


async def is_psychiatrist_of(conn: Connection, clinician_id: str, patient_id: str) -> bool:
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM ({PSYCHIATRISTS}) p WHERE p.psychiatrist_id = $2)",
        patient_id,
        clinician_id,
    )
    return found


async def treats(conn: Connection, clinician_id: str, patient_id: str) -> bool:
    """Whether the clinician treats the patient now: one of their psychiatrists (a psychiatric
    visit that is not cancelled), or a member of their ACTIVE care team. Not a former member,
    not the requester of a closed referral. Decides who may see the patient's referrals,
    consents and care team, and revoke or complete a referral (ADR 0015)."""
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM ({PSYCHIATRISTS}) p WHERE p.psychiatrist_id = $2)"
        " OR EXISTS (SELECT 1 FROM care_teams WHERE patient_id = $1 AND status = 'active'"
        "            AND (psychiatrist_id = $2 OR therapist_id = $2))",
        patient_id,
        clinician_id,
    )
    return found
