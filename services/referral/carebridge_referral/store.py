"""SQL of the referral service (asyncpg; tables live in the `referral` schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import asyncpg

from carebridge_contracts import AssessmentCompleted, OutcomeMeasured
from carebridge_referral import domain
from carebridge_shared.db import Connection
from carebridge_shared.projection import Compared, Copied, Projection

PLAN_SCOPE = "care_plan_sharing"

# What referral's handlers derive from intake's and booking's events (`carebridge projection
# rebuild referral` replays them and compares). The rest of referral's state follows from its
# API, the roster and consents at the time (psychiatrists' referrals, matching, care teams,
# plans), so events alone cannot reproduce it.
PROJECTION = Projection(
    compared=(
        # An intake with therapy interest opens one referral. What happens to it next (a match,
        # a psychiatrist taking it over, closing) is the API's; its id and times are generated.
        Compared(
            "referrals",
            key=("assessment_id",),
            columns=("patient_id",),
            where="assessment_id IS NOT NULL",
        ),
        # Psychiatric visits, one row per appointment, as booking's events left them.
        Compared(
            "psychiatric_visits",
            key=("appointment_id",),
            columns=("patient_id", "psychiatrist_id", "status", "starts_at"),
        ),
        # The outcome trend: intake assessments and repeat measures, as intake scored them.
        Compared(
            "outcome_measures",
            key=("assessment_id",),
            columns=(
                "patient_id",
                "kind",
                "measured_at",
                "phq9_total",
                "gad7_total",
                "phq9_change",
                "gad7_change",
                "phq9_response",
                "phq9_remission",
            ),
        ),
    ),
    copied=(
        Copied("therapists"),  # the roster (seed and API), named by copied referrals
        # Psychiatrists' referrals: an open one keeps an intake from opening a second one.
        Copied("referrals", where="assessment_id IS NULL"),
        # Psychiatrists from before psychiatric visits were kept (migration 0002).
        Copied("carried_over_psychiatrists"),
    ),
)


async def lock_matching(conn: Connection) -> None:
    """Enter matching's critical section (see the `matching_lock` table); transaction-scoped.

    Take it first, before any other lock, in every transaction that may assign a therapist
    or change capacity, licences, modalities, consent or the queue.
    """
    await conn.execute("SELECT id FROM matching_lock WHERE id = 1 FOR UPDATE")


# --- therapists ----------------------------------------------------------------------------

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


# --- referrals -----------------------------------------------------------------------------

_REFERRAL_FIELDS = (
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


def _referral_columns(alias: str = "") -> str:
    return ", ".join(f"{alias}.{f}" if alias else f for f in _REFERRAL_FIELDS)


_REFERRAL_COLUMNS = _referral_columns()


def _referral(row: asyncpg.Record) -> domain.Referral:
    return domain.Referral(**cast(dict[str, Any], dict(row)))


async def insert_referral(conn: Connection, referral: domain.Referral) -> None:
    """Insert; raises `asyncpg.UniqueViolationError` (ONE_OPEN_REFERRAL) for a second open one."""
    await conn.execute(
        f"INSERT INTO referrals ({_REFERRAL_COLUMNS})"
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
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE id = $1{lock}", referral_id
    )
    return None if row is None else _referral(row)


async def open_referral_for(conn: Connection, patient_id: str) -> domain.Referral | None:
    row = await conn.fetchrow(
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals"
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
        f"SELECT {_REFERRAL_COLUMNS} FROM referrals"
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


async def waiting_referrals(conn: Connection) -> list[tuple[domain.Referral, bool]]:
    """The matching queue, locked: open referrals nobody took yet, with the patient's
    care_plan_sharing consent."""
    rows = await conn.fetch(
        f"SELECT {_referral_columns('r')},"
        " coalesce((SELECT k.status = 'granted' FROM consents k"
        "   WHERE k.patient_id = r.patient_id AND k.scope = $1), false) AS consent_granted"
        " FROM referrals r"
        " WHERE r.therapist_id IS NULL AND r.status IN ('active', 'on-hold')"
        " ORDER BY r.created_at, r.id FOR UPDATE OF r",
        PLAN_SCOPE,
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


# --- care teams ----------------------------------------------------------------------------

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


# --- the patient's psychiatrists -----------------------------------------------------------

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


# --- consents ------------------------------------------------------------------------------

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


# --- care plans ----------------------------------------------------------------------------

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


# --- outcome trend (from intake's AssessmentCompleted and OutcomeMeasured) ------------------


async def record_intake_measure(conn: Connection, event: AssessmentCompleted) -> None:
    await conn.execute(
        "INSERT INTO outcome_measures (assessment_id, patient_id, kind, measured_at,"
        " phq9_total, phq9_band, gad7_total, gad7_band)"
        " VALUES ($1, $2, 'intake', $3, $4, $5, $6, $7) ON CONFLICT (assessment_id) DO NOTHING",
        event.assessment_id,
        event.patient_id,
        event.completed_at,
        event.phq9_total,
        event.phq9_band,
        event.gad7_total,
        event.gad7_band,
    )


async def record_repeat_measure(conn: Connection, event: OutcomeMeasured) -> None:
    await conn.execute(
        "INSERT INTO outcome_measures (assessment_id, patient_id, kind, measured_at,"
        " phq9_total, phq9_band, gad7_total, gad7_band, baseline_assessment_id, phq9_change,"
        " gad7_change, phq9_meaningful_change, gad7_meaningful_change, phq9_response,"
        " phq9_remission, gad7_response, gad7_remission)"
        " VALUES ($1, $2, 'repeat', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
        " $16) ON CONFLICT (assessment_id) DO NOTHING",
        event.assessment_id,
        event.patient_id,
        event.measured_at,
        event.phq9_total,
        event.phq9_band,
        event.gad7_total,
        event.gad7_band,
        event.baseline_assessment_id,
        event.phq9_change,
        event.gad7_change,
        event.phq9_meaningful_change,
        event.gad7_meaningful_change,
        event.phq9_response,
        event.phq9_remission,
        event.gad7_response,
        event.gad7_remission,
    )


async def outcome_trend(conn: Connection, patient_id: str) -> list[domain.OutcomePoint]:
    """The patient's measures, oldest first: intake assessments, then repeat measures."""
    rows = await conn.fetch(
        "SELECT assessment_id, kind, measured_at, phq9_total, phq9_band, gad7_total, gad7_band,"
        " baseline_assessment_id, phq9_change, gad7_change, phq9_meaningful_change,"
        " gad7_meaningful_change, phq9_response, phq9_remission, gad7_response, gad7_remission"
        " FROM outcome_measures WHERE patient_id = $1 ORDER BY measured_at, assessment_id",
        patient_id,
    )
    return [domain.OutcomePoint(**dict(row)) for row in rows]
