"""HTTP API of the intake service: submit an assessment or a repeat measure, read scores back.

Routes only translate: body, path and caller in, one use case (`assessments`,
`repeat_measures`), the answer out.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from carebridge_intake import assessments, repeat_measures
from carebridge_intake.models import AssessmentIn, AssessmentOut, RepeatMeasureIn, RepeatMeasureOut
from carebridge_intake.settings import IntakeSettings
from carebridge_intake.store import IdempotentRequest
from carebridge_shared import audit
from carebridge_shared.auth import Principal, allow
from carebridge_shared.context import ServiceContext
from carebridge_shared.service import service_context

router = APIRouter(prefix="/v1", tags=["intake"])
router.include_router(audit.router)

REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
]
Context = Annotated[ServiceContext[IntakeSettings], Depends(service_context)]
Patient = Annotated[Principal, Depends(allow("patient"))]
PatientOrClinician = Annotated[Principal, Depends(allow("patient", "clinician"))]


def _idempotency(key: str | None, body: AssessmentIn | RepeatMeasureIn) -> IdempotentRequest | None:
    return IdempotentRequest(key, body.fingerprint()) if key else None


def _mark_replayed(response: Response) -> None:
    response.status_code = 200
    response.headers[REPLAYED_HEADER] = "true"


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
    submitted = await assessments.submit(
        ctx,
        caller,
        patient_id=body.patient_id,
        state=body.state,
        answers=body.answers(),
        therapy_interest=body.therapy_interest,
        preferred_channel=body.preferred_channel,
        idempotency=_idempotency(idempotency_key, body),
    )
    if submitted.replayed:
        _mark_replayed(response)
    return AssessmentOut.of(submitted.assessment)


@router.get("/assessments/{assessment_id}", responses={404: {"description": "Unknown id."}})
async def get_assessment(
    assessment_id: uuid.UUID, ctx: Context, caller: PatientOrClinician
) -> AssessmentOut:
    """The stored scores, bands and flags of an assessment (never the answers): for the patient,
    and for clinicians who treat them (a visit booked with them, a therapist match)."""
    return AssessmentOut.of(await assessments.get(ctx, caller, assessment_id))


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
    recorded = await repeat_measures.record(
        ctx,
        caller,
        patient_id=body.patient_id,
        state=body.state,
        appointment_id=body.appointment_id,
        answers=body.answers(),
        idempotency=_idempotency(idempotency_key, body),
    )
    if recorded.replayed:
        _mark_replayed(response)
    return RepeatMeasureOut.of(recorded)
