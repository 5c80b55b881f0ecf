"""SQL of the booking service (asyncpg; tables live in the `booking` schema)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, cast
from uuid import UUID

import asyncpg

from carebridge_booking import domain
from carebridge_shared.db import Connection
from carebridge_shared.projection import Compared, Projection

# Constraint and index names the API maps to 409 codes.
CLINICIAN_OVERLAP = "appointments_clinician_no_overlap"
PATIENT_OVERLAP = "appointments_patient_no_overlap"
ONE_INITIAL_EVALUATION = "appointments_one_booked_initial_evaluation"

# What booking's handlers derive from intake's and referral's events (`carebridge projection
# rebuild booking` replays them and compares). Clinicians and appointments are the API's own
# state, not derived. Left out: updated_at and matched_at (the handler's wall clock); of
# ended_at only the fact that the match ended (its time is the handler's clock too).
PROJECTION = Projection(
    compared=(
        Compared(
            "patient_eligibility",
            key=("patient_id",),
            columns=(
                "assessment_id",
                "assessment_completed_at",
                "urgent_review_required",
                "risk_flagged_at",
            ),
        ),
        Compared(
            "therapist_matches",
            key=("referral_id",),
            columns=("patient_id", "therapist_id"),
            expressions=(("ended", "ended_at IS NOT NULL"),),
        ),
    ),
)


# --- clinicians ----------------------------------------------------------------------------


def _hours_to_json(hours: domain.WorkingHours) -> str:
    return json.dumps(
        {
            domain.WEEKDAYS[day]: [
                {"start": w.start.isoformat("minutes"), "end": w.end.isoformat("minutes")}
                for w in windows
            ]
            for day, windows in sorted(hours.items())
        }
    )


def _hours_from_json(raw: str) -> domain.WorkingHours:
    parsed: dict[str, list[dict[str, str]]] = json.loads(raw)
    return {
        domain.WEEKDAYS.index(day): tuple(
            domain.TimeWindow(time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
            for w in windows
        )
        for day, windows in parsed.items()
    }


_CLINICIAN_COLUMNS = """
    c.id, c.role, c.time_zone, c.working_hours::text AS working_hours, c.modalities,
    c.capacity, c.active,
    coalesce(
        (SELECT array_agg(l.state ORDER BY l.state) FROM clinician_licences l
         WHERE l.clinician_id = c.id), '{}') AS licence_states,
    coalesce(
        (SELECT array_agg(l.expires_on ORDER BY l.state) FROM clinician_licences l
         WHERE l.clinician_id = c.id), '{}') AS licence_expiries
"""


def _clinician(row: asyncpg.Record) -> domain.Clinician:
    return domain.Clinician(
        id=row["id"],
        role=row["role"],
        time_zone=row["time_zone"],
        licences=tuple(
            domain.Licence(state, expires)
            for state, expires in zip(row["licence_states"], row["licence_expiries"], strict=True)
        ),
        working_hours=_hours_from_json(row["working_hours"]),
        modalities=tuple(row["modalities"]),
        capacity=row["capacity"],
        active=row["active"],
    )


async def get_clinician(
    conn: Connection, clinician_id: str, *, for_share: bool = False
) -> domain.Clinician | None:
    """One clinician; `for_share` holds its row so a concurrent PUT waits for our booking."""
    lock = " FOR SHARE OF c" if for_share else ""
    row = await conn.fetchrow(
        f"SELECT {_CLINICIAN_COLUMNS} FROM clinicians c WHERE c.id = $1{lock}", clinician_id
    )
    return None if row is None else _clinician(row)


async def list_clinicians(
    conn: Connection,
    *,
    state: str | None = None,
    role: str | None = None,
    active: bool | None = None,
    licensed_at: datetime | None = None,
    clinician_id: str | None = None,
) -> list[domain.Clinician]:
    """Clinicians, optionally only those whose licence in `state` has not expired by
    `licensed_at` (judged on the clinician's local date, as the domain does), or only one."""
    rows = await conn.fetch(
        f"SELECT {_CLINICIAN_COLUMNS} FROM clinicians c"
        " WHERE ($1::text IS NULL OR EXISTS ("
        "   SELECT 1 FROM clinician_licences l WHERE l.clinician_id = c.id AND l.state = $1"
        "   AND (l.expires_on IS NULL OR $4::timestamptz IS NULL"
        "        OR l.expires_on >= ($4::timestamptz AT TIME ZONE c.time_zone)::date)))"
        " AND ($2::text IS NULL OR c.role = $2)"
        " AND ($3::boolean IS NULL OR c.active = $3)"
        " AND ($5::text IS NULL OR c.id = $5)"
        " ORDER BY c.id",
        state,
        role,
        active,
        licensed_at,
        clinician_id,
    )
    return [_clinician(row) for row in rows]


async def upsert_clinician(conn: Connection, clinician: domain.Clinician) -> bool:
    """Create or replace a clinician and its licences; True when it was created.

    Must run in a transaction: the licences are replaced wholesale.
    """
    created: bool = await conn.fetchval(
        "INSERT INTO clinicians"
        " (id, role, time_zone, working_hours, modalities, capacity, active)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"
        " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, time_zone = EXCLUDED.time_zone,"
        " working_hours = EXCLUDED.working_hours, modalities = EXCLUDED.modalities,"
        " capacity = EXCLUDED.capacity, active = EXCLUDED.active, updated_at = now()"
        " RETURNING (xmax = 0)",
        clinician.id,
        clinician.role,
        clinician.time_zone,
        _hours_to_json(clinician.working_hours),
        list(clinician.modalities),
        clinician.capacity,
        clinician.active,
    )
    await conn.execute("DELETE FROM clinician_licences WHERE clinician_id = $1", clinician.id)
    await conn.executemany(
        "INSERT INTO clinician_licences (clinician_id, state, expires_on) VALUES ($1, $2, $3)",
        [(clinician.id, lic.state, lic.expires_on) for lic in clinician.licences],
    )
    return created


async def lock_clinician_directory(conn: Connection) -> None:
    """Serialise seeding across replicas starting together (transaction-scoped)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('booking:clinician-seed'))")


# --- eligibility ---------------------------------------------------------------------------


RECORD_ASSESSMENT = (
    "INSERT INTO patient_eligibility AS e (patient_id, assessment_id,"
    " assessment_completed_at, urgent_review_required, risk_flagged_at)"
    " VALUES ($1, $2, $3::timestamptz, $4::boolean,"
    "  CASE WHEN $4::boolean THEN $3::timestamptz END)"
    " ON CONFLICT (patient_id) DO UPDATE SET"
    "  assessment_id = CASE WHEN e.assessment_completed_at IS NULL"
    "    OR e.assessment_completed_at <= EXCLUDED.assessment_completed_at"
    "    THEN EXCLUDED.assessment_id ELSE e.assessment_id END,"
    "  assessment_completed_at = greatest(e.assessment_completed_at,"
    "    EXCLUDED.assessment_completed_at),"
    "  urgent_review_required = e.urgent_review_required OR EXCLUDED.urgent_review_required,"
    "  risk_flagged_at = coalesce(e.risk_flagged_at, EXCLUDED.risk_flagged_at),"
    "  updated_at = now()"
)


@dataclass(frozen=True, slots=True)
class AssessmentSeen:
    patient_id: str
    assessment_id: UUID
    completed_at: datetime
    imminent_risk: bool


async def record_assessment(
    conn: Connection,
    patient_id: str,
    assessment_id: UUID,
    completed_at: datetime,
    imminent_risk: bool,
) -> None:
    """Keep the latest assessment; imminent risk, once seen, stays until a clinician clears it."""
    await record_assessments(
        conn, [AssessmentSeen(patient_id, assessment_id, completed_at, imminent_risk)]
    )


async def record_assessments(conn: Connection, seen: Sequence[AssessmentSeen]) -> None:
    """`record_assessment` for several, in order, in one pipelined round trip (executemany)."""
    await conn.executemany(
        RECORD_ASSESSMENT,
        [(a.patient_id, a.assessment_id, a.completed_at, a.imminent_risk) for a in seen],
    )


async def record_risk(
    conn: Connection, patient_id: str, flagged_at: datetime, imminent: bool
) -> None:
    await conn.execute(
        "INSERT INTO patient_eligibility AS e (patient_id, urgent_review_required, risk_flagged_at)"
        " VALUES ($1, $2::boolean, CASE WHEN $2::boolean THEN $3::timestamptz END)"
        " ON CONFLICT (patient_id) DO UPDATE SET"
        "  urgent_review_required = e.urgent_review_required OR EXCLUDED.urgent_review_required,"
        "  risk_flagged_at = coalesce(e.risk_flagged_at, EXCLUDED.risk_flagged_at),"
        "  updated_at = now()",
        patient_id,
        imminent,
        flagged_at,
    )


async def patient_standing(conn: Connection, patient_id: str) -> domain.PatientStanding:
    row = await conn.fetchrow(
        "SELECT"
        " coalesce((SELECT e.assessment_completed_at IS NOT NULL FROM patient_eligibility e"
        "   WHERE e.patient_id = $1), false) AS assessment_completed,"
        " coalesce((SELECT e.urgent_review_required FROM patient_eligibility e"
        "   WHERE e.patient_id = $1), false) AS urgent_review_required,"
        " EXISTS (SELECT 1 FROM appointments a WHERE a.patient_id = $1"
        "   AND a.visit_type = 'initial_psychiatric_evaluation' AND a.status = 'fulfilled')"
        "   AS initial_evaluation_fulfilled,"
        " coalesce((SELECT array_agg(DISTINCT a.clinician_id) FROM appointments a"
        "   WHERE a.patient_id = $1 AND a.visit_type = 'therapy_intake'"
        "   AND a.status = 'fulfilled'), '{}') AS therapy_intake_fulfilled_with,"
        " EXISTS (SELECT 1 FROM therapist_matches m WHERE m.patient_id = $1) AS ever_matched,"
        " coalesce((SELECT array_agg(DISTINCT m.therapist_id) FROM therapist_matches m"
        "   WHERE m.patient_id = $1 AND m.ended_at IS NULL), '{}') AS matched_therapists",
        patient_id,
    )
    assert row is not None  # a SELECT without FROM always returns one row
    return domain.PatientStanding(
        assessment_completed=row["assessment_completed"],
        urgent_review_required=row["urgent_review_required"],
        initial_evaluation_fulfilled=row["initial_evaluation_fulfilled"],
        therapy_intake_fulfilled_with=frozenset(row["therapy_intake_fulfilled_with"]),
        # Until referral matched the patient once, any therapist may take the intake.
        matched_therapists=(frozenset(row["matched_therapists"]) if row["ever_matched"] else None),
    )


# --- therapist matches (from referral) -----------------------------------------------------


async def record_match(
    conn: Connection, referral_id: UUID, patient_id: str, therapist_id: str
) -> None:
    await conn.execute(
        "INSERT INTO therapist_matches (referral_id, patient_id, therapist_id)"
        " VALUES ($1, $2, $3) ON CONFLICT (referral_id) DO NOTHING",
        referral_id,
        patient_id,
        therapist_id,
    )


async def end_match(
    conn: Connection, referral_id: UUID, patient_id: str, therapist_id: str
) -> None:
    """The care team ended; recorded even if the match itself was never seen."""
    await conn.execute(
        "INSERT INTO therapist_matches (referral_id, patient_id, therapist_id, ended_at)"
        " VALUES ($1, $2, $3, now())"
        " ON CONFLICT (referral_id) DO UPDATE SET ended_at = coalesce("
        "  therapist_matches.ended_at, EXCLUDED.ended_at)",
        referral_id,
        patient_id,
        therapist_id,
    )


# --- appointments --------------------------------------------------------------------------

_APPOINTMENT_COLUMNS = (
    "id, patient_id, clinician_id, clinician_role, visit_type, state, starts_at, ends_at,"
    " status, cancelled_by, cancel_reason, created_at, updated_at"
)


def _appointment(row: asyncpg.Record) -> domain.Appointment:
    return domain.Appointment(**cast(dict[str, Any], dict(row)))


async def insert_appointment(
    conn: Connection, appointment: domain.Appointment
) -> domain.Appointment:
    """Insert; raises `asyncpg.ExclusionViolationError` when the interval is taken."""
    row = await conn.fetchrow(
        "INSERT INTO appointments (id, patient_id, clinician_id, clinician_role, visit_type,"
        " state, starts_at, ends_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {_APPOINTMENT_COLUMNS}",
        appointment.id,
        appointment.patient_id,
        appointment.clinician_id,
        appointment.clinician_role,
        appointment.visit_type,
        appointment.state,
        appointment.starts_at,
        appointment.ends_at,
        appointment.status,
    )
    assert row is not None
    return _appointment(row)


async def get_appointment(
    conn: Connection, appointment_id: UUID, *, for_update: bool = False
) -> domain.Appointment | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_APPOINTMENT_COLUMNS} FROM appointments WHERE id = $1{lock}", appointment_id
    )
    return None if row is None else _appointment(row)


async def list_appointments(
    conn: Connection,
    *,
    patient_id: str | None,
    clinician_id: str | None,
    status: str | None,
) -> list[domain.Appointment]:
    rows = await conn.fetch(
        f"SELECT {_APPOINTMENT_COLUMNS} FROM appointments"
        " WHERE ($1::text IS NULL OR patient_id = $1)"
        " AND ($2::text IS NULL OR clinician_id = $2)"
        " AND ($3::text IS NULL OR status = $3)"
        " ORDER BY starts_at, id",
        patient_id,
        clinician_id,
        status,
    )
    return [_appointment(row) for row in rows]


async def update_appointment(
    conn: Connection,
    appointment_id: UUID,
    *,
    status: str,
    state: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    cancelled_by: str | None = None,
    cancel_reason: str | None = None,
) -> domain.Appointment:
    """Change status (and time, place or cancellation details); None keeps a value."""
    row = await conn.fetchrow(
        "UPDATE appointments SET status = $2, state = coalesce($3, state),"
        " starts_at = coalesce($4, starts_at), ends_at = coalesce($5, ends_at),"
        " cancelled_by = coalesce($6, cancelled_by), cancel_reason = coalesce($7, cancel_reason),"
        f" updated_at = now() WHERE id = $1 RETURNING {_APPOINTMENT_COLUMNS}",
        appointment_id,
        status,
        state,
        starts_at,
        ends_at,
        cancelled_by,
        cancel_reason,
    )
    assert row is not None
    return _appointment(row)


async def busy_intervals(
    conn: Connection, clinician_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[domain.Interval]]:
    """Booked intervals of these clinicians overlapping [start, end)."""
    rows = await conn.fetch(
        "SELECT clinician_id, starts_at, ends_at FROM appointments"
        " WHERE clinician_id = ANY($1::text[]) AND status = 'booked'"
        " AND tstzrange(starts_at, ends_at, '[)') && tstzrange($2, $3, '[)')",
        list(clinician_ids),
        start,
        end,
    )
    busy: dict[str, list[domain.Interval]] = {}
    for row in rows:
        busy.setdefault(row["clinician_id"], []).append(
            domain.Interval(row["starts_at"], row["ends_at"])
        )
    return busy


async def treats(conn: Connection, clinician_id: str, patient_id: str) -> bool:
    """Whether booking links the clinician to the patient now: a visit that is not cancelled,
    or a therapist match whose care team has not ended (nor the therapist left it). Decides who
    may see and book the patient's appointments (ADR 0012, ADR 0015)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM appointments WHERE patient_id = $1 AND clinician_id = $2"
        "               AND status <> 'cancelled')"
        " OR EXISTS (SELECT 1 FROM therapist_matches WHERE patient_id = $1 AND therapist_id = $2"
        "            AND ended_at IS NULL)",
        patient_id,
        clinician_id,
    )
    return found
