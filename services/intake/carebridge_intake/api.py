"""HTTP API of the intake service: submit an assessment, read its scores back."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Self

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, model_validator

from carebridge_contracts.events.common import Channel, PatientId, StateCode
from carebridge_contracts.events.intake import Gad7Band, Phq9Band, SafetyReason
from carebridge_intake import domain, outcomes, repeat_measures, store
from carebridge_intake.domain import Answers, Assessment, Cssrs
from carebridge_intake.settings import IntakeSettings
from carebridge_intake.store import IdempotentRequest
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, allow, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found, refuse
from carebridge_shared.service import service_context

if TYPE_CHECKING:
    from carebridge_shared.db import Connection

log = get_logger(__name__)

router = APIRouter(prefix="/v1", tags=["intake"])
router.include_router(audit.router)

REPLAYED_HEADER = "Idempotent-Replayed"

Item = Annotated[int, Strict(), Field(ge=domain.ITEM_MIN, le=domain.ITEM_MAX)]
Phq9Answers = Annotated[
    list[Item], Field(min_length=domain.PHQ9_ITEMS, max_length=domain.PHQ9_ITEMS)
]
Gad7Answers = Annotated[
    list[Item], Field(min_length=domain.GAD7_ITEMS, max_length=domain.GAD7_ITEMS)
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
]


class CssrsIn(BaseModel):
    """C-SSRS screener: six yes/no answers, and when Q6 is yes, whether it was in 3 months."""

    model_config = ConfigDict(extra="forbid")

    q1_wish_to_be_dead: StrictBool
    q2_suicidal_thoughts: StrictBool
    q3_method: StrictBool
    q4_intent: StrictBool
    q5_plan: StrictBool
    q6_behaviour: StrictBool
    q6_within_past_3_months: StrictBool | None = None

    @model_validator(mode="after")
    def _timing_known_when_behaviour(self) -> Self:
        # Assuming "not recent" would hide imminent risk, so the answer is required.
        if self.q6_behaviour and self.q6_within_past_3_months is None:
            raise ValueError("q6_within_past_3_months is required when q6_behaviour is true")
        return self

    def to_domain(self) -> Cssrs:
        return Cssrs(
            q1_wish_to_be_dead=self.q1_wish_to_be_dead,
            q2_suicidal_thoughts=self.q2_suicidal_thoughts,
            q3_method=self.q3_method,
            q4_intent=self.q4_intent,
            q5_plan=self.q5_plan,
            q6_behaviour=self.q6_behaviour,
            q6_within_past_3_months=bool(self.q6_within_past_3_months),
        )


def questionnaire_answers(
    phq9: Sequence[int], gad7: Sequence[int], cssrs: CssrsIn | None
) -> Answers:
    """The domain's answers from a request's PHQ-9, GAD-7 and optional C-SSRS screener."""
    return Answers(phq9=tuple(phq9), gad7=tuple(gad7), cssrs=cssrs.to_domain() if cssrs else None)


def fingerprint(body: BaseModel) -> str:
    """A request body's canonical hash: an idempotent replay must carry the same body."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: PatientId
    state: StateCode = Field(description="Where the patient is now (USPS code).")
    phq9: Phq9Answers = Field(description="PHQ-9 answers, items 1-9 in order, each 0-3.")
    gad7: Gad7Answers = Field(description="GAD-7 answers, items 1-7 in order, each 0-3.")
    cssrs: CssrsIn | None = None
    therapy_interest: StrictBool
    preferred_channel: Channel

    def answers(self) -> Answers:
        return questionnaire_answers(self.phq9, self.gad7, self.cssrs)

    def fingerprint(self) -> str:
        return fingerprint(self)


class SafetyOut(BaseModel):
    reasons: list[SafetyReason]
    imminent: bool
    crisis_message: str
    urgent_clinician_review: bool
    self_booking_paused: bool
    note: str | None

    @classmethod
    def of(cls, scores: domain.Scores) -> Self | None:
        guidance = domain.safety_guidance(scores)
        if guidance is None:
            return None
        return cls(
            reasons=list(guidance.reasons),
            imminent=guidance.imminent,
            crisis_message=guidance.crisis_message,
            urgent_clinician_review=guidance.urgent_clinician_review,
            self_booking_paused=guidance.self_booking_paused,
            note=guidance.note,
        )


class AssessmentOut(BaseModel):
    assessment_id: uuid.UUID
    patient_id: str
    state: str
    phq9_total: int
    phq9_band: Phq9Band
    gad7_total: int
    gad7_band: Gad7Band
    item9_positive: bool
    cssrs_imminent_risk: bool
    therapy_interest: bool
    preferred_channel: Channel
    completed_at: datetime
    safety: SafetyOut | None

    @classmethod
    def of(cls, assessment: Assessment) -> Self:
        scores = assessment.scores
        return cls(
            assessment_id=assessment.assessment_id,
            patient_id=assessment.patient_id,
            state=assessment.state,
            phq9_total=scores.phq9_total,
            phq9_band=scores.phq9_band,
            gad7_total=scores.gad7_total,
            gad7_band=scores.gad7_band,
            item9_positive=scores.item9_positive,
            cssrs_imminent_risk=scores.cssrs_imminent_risk,
            therapy_interest=assessment.therapy_interest,
            preferred_channel=assessment.preferred_channel,
            completed_at=assessment.completed_at,
            safety=SafetyOut.of(scores),
        )


Context = Annotated[ServiceContext[IntakeSettings], Depends(service_context)]
Patient = Annotated[Principal, Depends(allow("patient"))]
PatientOrClinician = Annotated[Principal, Depends(allow("patient", "clinician"))]


@router.post(
    "/assessments",
    status_code=201,
    responses={
        200: {"description": "A retry with the same Idempotency-Key: the original assessment."},
        409: {"description": "The Idempotency-Key was used with a different request."},
    },
)
async def submit_assessment(
    body: AssessmentIn,
    response: Response,
    ctx: Context,
    caller: Patient,
    idempotency_key: IdempotencyKey = None,
) -> AssessmentOut:
    """Score the caller's own assessment, store it and emit its events in one transaction."""
    target = Target("assessment", None, body.patient_id)
    await require_patient_access(caller, body.patient_id, target=target)
    answers = body.answers()
    idempotency = (
        IdempotentRequest(idempotency_key, body.fingerprint()) if idempotency_key else None
    )
    assessment = domain.assess(
        assessment_id=uuid.uuid4(),
        patient_id=body.patient_id,
        state=body.state,
        answers=answers,
        therapy_interest=body.therapy_interest,
        preferred_channel=body.preferred_channel,
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
                replayed = await _replay(conn, body.patient_id, idempotency, response)
                await _audit(conn, caller, "read", replayed)
            return AssessmentOut.of(replayed)
    scores = assessment.scores
    log.info(
        "assessment_recorded",
        assessment_id=str(assessment.assessment_id),
        patient_id=assessment.patient_id,
        safety_reasons=list(scores.safety_reasons),
        imminent=scores.cssrs_imminent_risk,
    )
    return AssessmentOut.of(assessment)


async def _audit(
    conn: Connection, caller: Principal, action: audit.Action, assessment: Assessment
) -> None:
    await audit.record(
        conn,
        caller,
        action,
        "assessment",
        str(assessment.assessment_id),
        assessment.patient_id,
    )


async def _replay(
    conn: Connection,
    patient_id: str,
    idempotency: IdempotentRequest | None,
    response: Response,
) -> Assessment:
    """The response of the request that first used this Idempotency-Key."""
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
    response.status_code = 200
    response.headers[REPLAYED_HEADER] = "true"
    return existing.assessment


@router.get("/assessments/{assessment_id}", responses={404: {"description": "Unknown id."}})
async def get_assessment(
    assessment_id: uuid.UUID, ctx: Context, caller: PatientOrClinician
) -> AssessmentOut:
    """The stored scores, bands and flags of an assessment (never the answers): for the patient,
    and for clinicians who treat them (a visit booked with them, a therapist match)."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        assessment = await store.get_assessment(conn, assessment_id)
        if assessment is None:
            raise not_found("assessment")

        async def treats(clinician_id: str, patient_id: str) -> bool:
            return await store.treats(conn, clinician_id, patient_id)

        target = Target("assessment", str(assessment_id), assessment.patient_id)
        await require_patient_access(caller, assessment.patient_id, treats, target=target)
        await _audit(conn, caller, "read", assessment)
    return AssessmentOut.of(assessment)


# --- repeat measures (measurement-based care) ---------------------------------------------


class RepeatMeasureIn(BaseModel):
    """The PHQ-9 and GAD-7 again (and the C-SSRS screener when offered), before a follow-up
    (`appointment_id` from the reminder's link) or on demand."""

    model_config = ConfigDict(extra="forbid")

    patient_id: PatientId
    state: StateCode = Field(description="Where the patient is now (USPS code).")
    appointment_id: uuid.UUID | None = Field(
        default=None, description="The follow-up this measure is taken before (from the link)."
    )
    phq9: Phq9Answers = Field(description="PHQ-9 answers, items 1-9 in order, each 0-3.")
    gad7: Gad7Answers = Field(description="GAD-7 answers, items 1-7 in order, each 0-3.")
    cssrs: CssrsIn | None = None

    def answers(self) -> Answers:
        return questionnaire_answers(self.phq9, self.gad7, self.cssrs)

    def fingerprint(self) -> str:
        return fingerprint(self)


class RepeatMeasureOut(BaseModel):
    """Scores, bands and the change from the baseline (the intake assessment); never answers."""

    assessment_id: uuid.UUID
    patient_id: str
    appointment_id: uuid.UUID | None
    baseline_assessment_id: uuid.UUID
    phq9_total: int
    phq9_band: Phq9Band
    gad7_total: int
    gad7_band: Gad7Band
    phq9_change: int = Field(description="Change from baseline; negative is better.")
    gad7_change: int = Field(description="Change from baseline; negative is better.")
    phq9_response: bool
    phq9_remission: bool
    gad7_response: bool
    gad7_remission: bool
    measured_at: datetime
    safety: SafetyOut | None

    @classmethod
    def of(cls, recorded: repeat_measures.Recorded) -> Self:
        repeat = recorded.repeat
        event = outcomes.outcome_measured(
            repeat.patient_id, recorded.baseline, repeat.measure, repeat.appointment_id
        )
        return cls(
            assessment_id=event.assessment_id,
            patient_id=event.patient_id,
            appointment_id=event.appointment_id,
            baseline_assessment_id=event.baseline_assessment_id,
            phq9_total=event.phq9_total,
            phq9_band=event.phq9_band,
            gad7_total=event.gad7_total,
            gad7_band=event.gad7_band,
            phq9_change=event.phq9_change,
            gad7_change=event.gad7_change,
            phq9_response=event.phq9_response,
            phq9_remission=event.phq9_remission,
            gad7_response=event.gad7_response,
            gad7_remission=event.gad7_remission,
            measured_at=event.measured_at,
            safety=SafetyOut.of(repeat.scores),
        )


@router.post(
    "/outcome-measures",
    status_code=201,
    responses={
        200: {"description": "A retry with the same Idempotency-Key: the original measure."},
        409: {"description": "Not in care, no baseline, or the Idempotency-Key was reused."},
    },
)
async def submit_repeat_measure(
    body: RepeatMeasureIn,
    response: Response,
    ctx: Context,
    caller: Patient,
    idempotency_key: IdempotencyKey = None,
) -> RepeatMeasureOut:
    """The caller's own repeat PHQ-9 / GAD-7 (a patient in care: a visit booked or a care
    team), scored as at intake; item 9 or the C-SSRS show the 988 message as at intake."""
    target = Target("outcome_measure", None, body.patient_id)
    await require_patient_access(caller, body.patient_id, target=target)
    recorded = await repeat_measures.record(
        ctx,
        caller,
        patient_id=body.patient_id,
        state=body.state,
        appointment_id=body.appointment_id,
        answers=body.answers(),
        idempotency=IdempotentRequest(idempotency_key, body.fingerprint())
        if idempotency_key
        else None,
    )
    if recorded.replayed:
        response.status_code = 200
        response.headers[REPLAYED_HEADER] = "true"
    return RepeatMeasureOut.of(recorded)
