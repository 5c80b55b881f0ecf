"""The outcome trend: intake's AssessmentCompleted and OutcomeMeasured, as intake scored them."""

from __future__ import annotations

from carebridge_contracts import AssessmentCompleted, OutcomeMeasured
from carebridge_referral import domain
from carebridge_shared.db import Connection


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
