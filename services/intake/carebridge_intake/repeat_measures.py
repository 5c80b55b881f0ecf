"""Repeat PHQ-9 / GAD-7 measures of a patient in care: scored by the intake rules, safety as at
intake (988 message, urgent review, the on-call alert first), and the trend's events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from carebridge_contracts import BaseEvent
from carebridge_intake import domain, outcomes, store
from carebridge_intake.domain import Answers
from carebridge_intake.settings import IntakeSettings
from carebridge_intake.store import IdempotentRequest, RepeatMeasure
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import refuse

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Recorded:
    repeat: RepeatMeasure
    baseline: outcomes.Measure
    replayed: bool


async def record(
    ctx: ServiceContext[IntakeSettings],
    caller: Principal,
    *,
    patient_id: str,
    state: str,
    appointment_id: uuid.UUID | None,
    answers: Answers,
    idempotency: IdempotentRequest | None,
) -> Recorded:
    """Score and store the measure and write its events in one transaction; a retry with the
    same Idempotency-Key returns the first measure (409 if the body differs). Only the
    patient themselves records one."""
    target = Target("outcome_measure", None, patient_id)
    await require_patient_access(caller, patient_id, target=target)
    scores = domain.score(answers)
    measured_at = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_outcomes(conn, patient_id)
        if idempotency is not None:
            existing = await store.find_repeat_by_key(conn, patient_id, idempotency.key)
            if existing is not None:
                return await _replay(conn, caller, existing, idempotency)
        baseline = await _baseline_in_care(conn, patient_id, appointment_id)
        previous = await store.latest_repeat_measure(conn, patient_id) or baseline
        current = outcomes.Measure.of(uuid.uuid4(), scores, measured_at)
        repeat = RepeatMeasure(
            patient_id=patient_id,
            state=state,
            appointment_id=appointment_id,
            baseline_assessment_id=baseline.assessment_id,
            scores=scores,
            measure=current,
        )
        await store.insert_repeat_measure(conn, repeat, answers, idempotency)
        events = outcomes.repeat_measure_events(
            patient_id=patient_id,
            state=state,
            scores=scores,
            current=current,
            baseline=baseline,
            previous=previous,
            appointment_id=appointment_id,
        )
        for event in events:
            await ctx.outbox.add(conn, event)
        await audit.record(
            conn, caller, "create", "outcome_measure", str(current.assessment_id), patient_id
        )
    _log_recorded(current, patient_id, scores, events)
    return Recorded(repeat, baseline, replayed=False)


async def _baseline_in_care(
    conn: Connection, patient_id: str, appointment_id: uuid.UUID | None
) -> outcomes.Measure:
    """The baseline a repeat measure is compared with; refused unless the patient is in care,
    the appointment (if named) is theirs and they took the intake assessment."""
    if not await store.in_care(conn, patient_id):
        raise refuse(
            "not_in_care",
            "Repeat measures are for patients in care: book a visit first (or ask your "
            "care team), then take them before each follow-up.",
            409,
        )
    if appointment_id is not None and not await store.has_visit(conn, patient_id, appointment_id):
        raise refuse(
            "appointment_unknown",
            "appointment_id is not a visit of this patient: use the link in your reminder, "
            "or leave appointment_id out.",
            422,
        )
    baseline = await store.baseline_measure(conn, patient_id)
    if baseline is None:
        raise refuse(
            "baseline_missing",
            "Take the intake assessment first (POST /v1/assessments): it is the baseline "
            "your repeat measures are compared with.",
            409,
        )
    return baseline


async def _replay(
    conn: Connection,
    caller: Principal,
    existing: tuple[RepeatMeasure, str],
    idempotency: IdempotentRequest,
) -> Recorded:
    repeat, fingerprint = existing
    if fingerprint != idempotency.fingerprint:
        raise refuse(
            "idempotency_key_reused",
            "Idempotency-Key was already used for a different measure of this patient; send a "
            "new key.",
            409,
        )
    baseline = await store.baseline_measure(conn, repeat.patient_id)
    if baseline is None:  # pragma: no cover - a stored measure always had a baseline
        raise RuntimeError("repeat measure without a baseline")
    await audit.record(
        conn,
        caller,
        "read",
        "outcome_measure",
        str(repeat.measure.assessment_id),
        repeat.patient_id,
    )
    return Recorded(repeat, baseline, replayed=True)


def _log_recorded(
    current: outcomes.Measure,
    patient_id: str,
    scores: domain.Scores,
    events: Sequence[BaseEvent],
) -> None:
    log.info(
        "repeat_measure_recorded",
        assessment_id=str(current.assessment_id),
        patient_id=patient_id,
        events=[type(e).__name__ for e in events],
        safety_reasons=list(scores.safety_reasons),
        imminent=scores.cssrs_imminent_risk,
    )
