"""SQL of the intake service (tables in the `intake` schema, see migrations/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from uuid import UUID

import asyncpg

from carebridge_contracts.events.common import Channel
from carebridge_contracts.events.intake import Gad7Band, Phq9Band, SafetyReason
from carebridge_intake.domain import Answers, Assessment, Scores
from carebridge_shared.projection import Compared, Projection

if TYPE_CHECKING:
    from carebridge_shared.db import Connection

# What intake's handlers derive from booking's and referral's events (`carebridge projection
# rebuild intake` replays them and compares): who treats whom. Which event told it first
# (`source`) depends on the order of two topics, and first_seen_at is the handler's clock.
PROJECTION = Projection(
    compared=(Compared("care_relationships", key=("patient_id", "clinician_id")),),
)

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
    cssrs = answers.cssrs
    cssrs_values: tuple[bool | None, ...] = (
        (None,) * 7
        if cssrs is None
        else (
            cssrs.q1_wish_to_be_dead,
            cssrs.q2_suicidal_thoughts,
            cssrs.q3_method,
            cssrs.q4_intent,
            cssrs.q5_plan,
            cssrs.q6_behaviour,
            cssrs.q6_within_past_3_months if cssrs.q6_behaviour else None,
        )
    )
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


async def record_relationship(
    conn: Connection, patient_id: str, clinician_id: str, source: str
) -> None:
    await conn.execute(
        "INSERT INTO care_relationships (patient_id, clinician_id, source) VALUES ($1, $2, $3)"
        " ON CONFLICT (patient_id, clinician_id) DO NOTHING",
        patient_id,
        clinician_id,
        source,
    )


async def treats(conn: Connection, clinician_id: str, patient_id: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM care_relationships"
        " WHERE patient_id = $1 AND clinician_id = $2)",
        patient_id,
        clinician_id,
    )
    return found
