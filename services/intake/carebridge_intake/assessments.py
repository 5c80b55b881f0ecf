"""Use cases of intake assessments: submit one (scored, stored and announced in one
transaction, idempotent per key) and read its scores back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from carebridge_contracts.events.common import Channel
from carebridge_intake import domain, store
from carebridge_intake.domain import Answers, Assessment
from carebridge_intake.settings import IntakeSettings
from carebridge_intake.store import IdempotentRequest
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found, refuse

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Submitted:
    assessment: Assessment
    replayed: bool  # a retry with the same Idempotency-Key: the first request's assessment


async def submit(
    ctx: ServiceContext[IntakeSettings],
    caller: Principal,
    *,
    patient_id: str,
    state: str,
    answers: Answers,
    therapy_interest: bool,
    preferred_channel: Channel,
    idempotency: IdempotentRequest | None,
) -> Submitted:
    """Score the caller's own assessment, store it and emit its events in one transaction."""
    await require_patient_access(caller, patient_id, target=Target("assessment", None, patient_id))
    assessment = domain.assess(
        assessment_id=uuid.uuid4(),
        patient_id=patient_id,
        state=state,
        answers=answers,
        therapy_interest=therapy_interest,
        preferred_channel=preferred_channel,
        completed_at=ctx.clock.now(),
    )
    async with ctx.pool.acquire() as conn:
        async with conn.transaction():
            inserted = await store.insert_assessment(conn, assessment, answers, idempotency)
            if inserted:
                for event in domain.events_for(assessment):
                    await ctx.outbox.add(conn, event)
                await _audit(conn, caller, "create", assessment)
        if not inserted:
            async with conn.transaction():
                replayed = await _replay(conn, patient_id, idempotency)
                await _audit(conn, caller, "read", replayed)
            return Submitted(replayed, replayed=True)
    scores = assessment.scores
    log.info(
        "assessment_recorded",
        assessment_id=str(assessment.assessment_id),
        patient_id=assessment.patient_id,
        safety_reasons=list(scores.safety_reasons),
        imminent=scores.cssrs_imminent_risk,
    )
    return Submitted(assessment, replayed=False)


async def _replay(
    conn: Connection, patient_id: str, idempotency: IdempotentRequest | None
) -> Assessment:
    """The assessment of the request that first used this Idempotency-Key."""
    existing = (
        None
        if idempotency is None
        else await store.find_by_idempotency_key(conn, patient_id, idempotency.key)
    )
    if idempotency is None or existing is None:  # pragma: no cover - only a taken key conflicts
        raise RuntimeError("assessment insert was a no-op without an idempotency conflict")
    if existing.fingerprint != idempotency.fingerprint:
        raise refuse(
            "idempotency_key_reused",
            "Idempotency-Key was already used for a different assessment of this patient; send "
            "a new key.",
            409,
        )
    log.info("assessment_replayed", assessment_id=str(existing.assessment.assessment_id))
    return existing.assessment


async def get(
    ctx: ServiceContext[IntakeSettings], caller: Principal, assessment_id: uuid.UUID
) -> Assessment:
    """The stored assessment (the read audited), for the patient and for clinicians who treat
    them (a visit booked with them, a therapist match)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        assessment = await store.get_assessment(conn, assessment_id)
        if assessment is None:
            raise not_found("assessment")

        async def treats(clinician_id: str, patient_id: str) -> bool:
            return await store.treats(conn, clinician_id, patient_id)

        target = Target("assessment", str(assessment_id), assessment.patient_id)
        await require_patient_access(caller, assessment.patient_id, treats, target=target)
        await _audit(conn, caller, "read", assessment)
    return assessment


async def _audit(
    conn: Connection, caller: Principal, action: audit.Action, assessment: Assessment
) -> None:
    await audit.record(
        conn, caller, action, "assessment", str(assessment.assessment_id), assessment.patient_id
    )
