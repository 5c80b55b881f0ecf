"""SQL of the intake service (tables in the `intake` schema, see migrations/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast
from uuid import UUID

import asyncpg

from carebridge_contracts.events.common import Channel
from carebridge_contracts.events.intake import Gad7Band, Phq9Band, SafetyReason
from carebridge_intake.domain import Answers, Assessment, Scores
from carebridge_intake.outcomes import Measure
from carebridge_shared.projection import Compared, Projection

if TYPE_CHECKING:
    from carebridge_shared.db import Connection

# What intake's handlers derive from booking's and referral's events (`carebridge projection
# rebuild intake` replays them and compares): who treats whom, and through which record.
# Carried-over rows come from a migration, not from events; updated_at is the handler's clock.
PROJECTION = Projection(
    compared=(
        Compared(
            "care_relationship_sources",
            key=("patient_id", "clinician_id", "source_kind", "source_id"),
            columns=("active",),
            where="source_kind <> 'carried_over'",
        ),
    ),
)

SourceKind = Literal["appointment", "care_team"]

_COLUMNS = (
    "assessment_id, patient_id, state, phq9_total, phq9_band, gad7_total, gad7_band,"
    " item9_positive, cssrs_imminent_risk, safety_reasons, therapy_interest,"
    " preferred_channel, completed_at"
)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """The Idempotency-Key of a request and a fingerprint of its body."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class KeyedAssessment:
    assessment: Assessment
    fingerprint: str


def _cssrs_values(answers: Answers) -> tuple[bool | None, ...]:
    """The seven C-SSRS columns, all NULL when the screener was not taken."""
    cssrs = answers.cssrs
    if cssrs is None:
        return (None,) * 7
    return (
        cssrs.q1_wish_to_be_dead,
        cssrs.q2_suicidal_thoughts,
        cssrs.q3_method,
        cssrs.q4_intent,
        cssrs.q5_plan,
        cssrs.q6_behaviour,
        cssrs.q6_within_past_3_months if cssrs.q6_behaviour else None,
    )


async def insert_assessment(
    conn: Connection,
    assessment: Assessment,
    answers: Answers,
    idempotency: IdempotentRequest | None,
) -> bool:
    """Insert the assessment; False (and nothing written) when its idempotency key is taken.

    When another transaction holds the same key uncommitted, this waits for it to finish.
    """
    scores = assessment.scores
    cssrs_values = _cssrs_values(answers)
    inserted = await conn.fetchval(
        "INSERT INTO assessments (assessment_id, patient_id, state, phq9_answers, gad7_answers,"
        " cssrs_q1_wish_to_be_dead, cssrs_q2_suicidal_thoughts, cssrs_q3_method,"
        " cssrs_q4_intent, cssrs_q5_plan, cssrs_q6_behaviour, cssrs_q6_within_past_3_months,"
        " phq9_total, phq9_band, gad7_total, gad7_band, item9_positive, cssrs_imminent_risk,"
        " safety_reasons, therapy_interest, preferred_channel, completed_at,"
        " idempotency_key, request_fingerprint)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
        " $18, $19, $20, $21, $22, $23, $24)"
        " ON CONFLICT (patient_id, idempotency_key) DO NOTHING RETURNING true",
        assessment.assessment_id,
        assessment.patient_id,
        assessment.state,
        list(answers.phq9),
        list(answers.gad7),
        *cssrs_values,
        scores.phq9_total,
        scores.phq9_band,
        scores.gad7_total,
        scores.gad7_band,
        scores.item9_positive,
        scores.cssrs_imminent_risk,
        list(scores.safety_reasons),
        assessment.therapy_interest,
        assessment.preferred_channel,
        assessment.completed_at,
        idempotency.key if idempotency else None,
        idempotency.fingerprint if idempotency else None,
    )
    return bool(inserted)


async def get_assessment(conn: Connection, assessment_id: UUID) -> Assessment | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM assessments WHERE assessment_id = $1", assessment_id
    )
    return None if row is None else _assessment(row)


async def find_by_idempotency_key(
    conn: Connection, patient_id: str, key: str
) -> KeyedAssessment | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, request_fingerprint FROM assessments"
        " WHERE patient_id = $1 AND idempotency_key = $2",
        patient_id,
        key,
    )
    if row is None:
        return None
    return KeyedAssessment(_assessment(row), row["request_fingerprint"])


def _assessment(row: asyncpg.Record) -> Assessment:
    # The CHECK constraints guarantee the text columns hold the literal values.
    reasons: tuple[SafetyReason, ...] = tuple(row["safety_reasons"])
    scores = Scores(
        phq9_total=row["phq9_total"],
        phq9_band=cast(Phq9Band, row["phq9_band"]),
        gad7_total=row["gad7_total"],
        gad7_band=cast(Gad7Band, row["gad7_band"]),
        item9_positive=row["item9_positive"],
        cssrs_imminent_risk=row["cssrs_imminent_risk"],
        safety_reasons=reasons,
    )
    return Assessment(
        assessment_id=row["assessment_id"],
        patient_id=row["patient_id"],
        state=row["state"],
        scores=scores,
        therapy_interest=row["therapy_interest"],
        preferred_channel=cast(Channel, row["preferred_channel"]),
        completed_at=row["completed_at"],
    )


# --- who treats whom (learnt from booking and referral events) ----------------------------


async def relate(
    conn: Connection, patient_id: str, clinician_id: str, kind: SourceKind, source_id: str
) -> None:
    """The clinician treats the patient through this record (a visit, a care team)."""
    await conn.execute(
        "INSERT INTO care_relationship_sources"
        " (patient_id, clinician_id, source_kind, source_id, active)"
        " VALUES ($1, $2, $3, $4, true)"
        " ON CONFLICT (patient_id, clinician_id, source_kind, source_id)"
        " DO UPDATE SET active = true, updated_at = now()",
        patient_id,
        clinician_id,
        kind,
        source_id,
    )


async def end_source(
    conn: Connection,
    patient_id: str,
    kind: SourceKind,
    source_id: str,
    clinician_ids: Sequence[str],
) -> None:
    """The record no longer makes these clinicians treat the patient (cancelled, ended, left).
    Recorded even if the record's beginning was never seen; ends carried-over rows of the same
    clinicians too (they stand for a reason whose record is unknown)."""
    await conn.executemany(
        "INSERT INTO care_relationship_sources"
        " (patient_id, clinician_id, source_kind, source_id, active)"
        " VALUES ($1, $2, $3, $4, false)"
        " ON CONFLICT (patient_id, clinician_id, source_kind, source_id)"
        " DO UPDATE SET active = false, updated_at = now()",
        [(patient_id, clinician, kind, source_id) for clinician in clinician_ids],
    )
    await conn.execute(
        "UPDATE care_relationship_sources SET active = false, updated_at = now()"
        " WHERE patient_id = $1 AND clinician_id = ANY($2::text[])"
        " AND source_kind = 'carried_over' AND active",
        patient_id,
        list(clinician_ids),
    )


async def members_of(conn: Connection, patient_id: str, care_team_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT clinician_id FROM care_relationship_sources"
        " WHERE patient_id = $1 AND source_kind = 'care_team' AND source_id = $2",
        patient_id,
        care_team_id,
    )
    return [row["clinician_id"] for row in rows]


async def treats(conn: Connection, clinician_id: str, patient_id: str) -> bool:
    """Whether any reason the clinician treats the patient is still active (ADR 0015)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM care_relationship_sources"
        " WHERE patient_id = $1 AND clinician_id = $2 AND active)",
        patient_id,
        clinician_id,
    )
    return found


async def in_care(conn: Connection, patient_id: str) -> bool:
    """Whether any clinician treats the patient now (a visit booked, a care team)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM care_relationship_sources WHERE patient_id = $1 AND active)",
        patient_id,
    )
    return found


# --- repeat measures (measurement-based care) ---------------------------------------------


async def lock_outcomes(conn: Connection, patient_id: str) -> None:
    """Serialise a patient's repeat measures, so "the measure before" is well defined."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('intake.outcome_measures'), hashtext($1))",
        patient_id,
    )


def _measure(row: asyncpg.Record) -> Measure:
    return Measure(
        assessment_id=row["assessment_id"],
        phq9_total=row["phq9_total"],
        phq9_band=cast(Phq9Band, row["phq9_band"]),
        gad7_total=row["gad7_total"],
        gad7_band=cast(Gad7Band, row["gad7_band"]),
        measured_at=row["measured_at"],
    )


async def baseline_measure(conn: Connection, patient_id: str) -> Measure | None:
    """The patient's first intake assessment: the baseline of their trend."""
    row = await conn.fetchrow(
        "SELECT assessment_id, phq9_total, phq9_band, gad7_total, gad7_band,"
        " completed_at AS measured_at FROM assessments WHERE patient_id = $1"
        " ORDER BY completed_at, created_at LIMIT 1",
        patient_id,
    )
    return None if row is None else _measure(row)


async def latest_repeat_measure(conn: Connection, patient_id: str) -> Measure | None:
    row = await conn.fetchrow(
        "SELECT assessment_id, phq9_total, phq9_band, gad7_total, gad7_band, measured_at"
        " FROM outcome_measures WHERE patient_id = $1"
        " ORDER BY measured_at DESC, created_at DESC LIMIT 1",
        patient_id,
    )
    return None if row is None else _measure(row)


@dataclass(frozen=True, slots=True)
class RepeatMeasure:
    """A scored repeat measure as stored (the answers are kept only in the table)."""

    patient_id: str
    state: str
    appointment_id: UUID | None
    baseline_assessment_id: UUID
    scores: Scores
    measure: Measure


async def insert_repeat_measure(
    conn: Connection,
    repeat: RepeatMeasure,
    answers: Answers,
    idempotency: IdempotentRequest | None,
) -> bool:
    """Insert the measure; False (and nothing written) when its idempotency key is taken."""
    scores = repeat.scores
    inserted = await conn.fetchval(
        "INSERT INTO outcome_measures (assessment_id, patient_id, appointment_id,"
        " baseline_assessment_id, state, phq9_answers, gad7_answers,"
        " cssrs_q1_wish_to_be_dead, cssrs_q2_suicidal_thoughts, cssrs_q3_method,"
        " cssrs_q4_intent, cssrs_q5_plan, cssrs_q6_behaviour, cssrs_q6_within_past_3_months,"
        " phq9_total, phq9_band, gad7_total, gad7_band, item9_positive, cssrs_imminent_risk,"
        " safety_reasons, measured_at, idempotency_key, request_fingerprint)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
        " $18, $19, $20, $21, $22, $23, $24)"
        " ON CONFLICT (patient_id, idempotency_key) DO NOTHING RETURNING true",
        repeat.measure.assessment_id,
        repeat.patient_id,
        repeat.appointment_id,
        repeat.baseline_assessment_id,
        repeat.state,
        list(answers.phq9),
        list(answers.gad7),
        *_cssrs_values(answers),
        scores.phq9_total,
        scores.phq9_band,
        scores.gad7_total,
        scores.gad7_band,
        scores.item9_positive,
        scores.cssrs_imminent_risk,
        list(scores.safety_reasons),
        repeat.measure.measured_at,
        idempotency.key if idempotency else None,
        idempotency.fingerprint if idempotency else None,
    )
    return bool(inserted)


_REPEAT_COLUMNS = (
    "assessment_id, patient_id, state, appointment_id, baseline_assessment_id, phq9_total,"
    " phq9_band, gad7_total, gad7_band, item9_positive, cssrs_imminent_risk, safety_reasons,"
    " measured_at, request_fingerprint"
)


def _repeat(row: asyncpg.Record) -> RepeatMeasure:
    return RepeatMeasure(
        patient_id=row["patient_id"],
        state=row["state"],
        appointment_id=row["appointment_id"],
        baseline_assessment_id=row["baseline_assessment_id"],
        scores=Scores(
            phq9_total=row["phq9_total"],
            phq9_band=cast(Phq9Band, row["phq9_band"]),
            gad7_total=row["gad7_total"],
            gad7_band=cast(Gad7Band, row["gad7_band"]),
            item9_positive=row["item9_positive"],
            cssrs_imminent_risk=row["cssrs_imminent_risk"],
            safety_reasons=tuple(row["safety_reasons"]),
        ),
        measure=_measure(row),
    )


async def find_repeat_by_key(
    conn: Connection, patient_id: str, key: str
) -> tuple[RepeatMeasure, str] | None:
    """The repeat measure stored under this Idempotency-Key, and its request fingerprint."""
    row = await conn.fetchrow(
        f"SELECT {_REPEAT_COLUMNS} FROM outcome_measures"
        " WHERE patient_id = $1 AND idempotency_key = $2",
        patient_id,
        key,
    )
    return None if row is None else (_repeat(row), row["request_fingerprint"])


async def has_visit(conn: Connection, patient_id: str, appointment_id: UUID) -> bool:
    """Whether booking told intake of this appointment of this patient."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM care_relationship_sources WHERE patient_id = $1"
        " AND source_kind = 'appointment' AND source_id = $2)",
        patient_id,
        str(appointment_id),
    )
    return found
