"""HTTP API of the referral service: therapists, referrals, care teams, consents, care plans.

Callers are the verified bearer token's principal (ADR 0012): a care-plan writer is the token's
clinician; who may reach which patient is decided by the use cases, from referral's own data
(`access.py`). Routes only translate: path, body and caller in, one use case, the answer out.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError

from carebridge_contracts.events.common import ClinicianId, Modality, PatientId, StateCode
from carebridge_contracts.events.referral import ConsentScope
from carebridge_referral import care_plans, care_teams, consents, domain, referrals, roster
from carebridge_referral.models import (
    CarePlanOut,
    CarePlanWrite,
    CareTeamOut,
    ConsentList,
    ConsentOut,
    ConsentRequest,
    OutcomeTrendOut,
    ReferralList,
    ReferralOut,
    ReferralRequest,
    TherapistBody,
    TherapistList,
    TherapistOut,
)
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, allow
from carebridge_shared.context import ServiceContext
from carebridge_shared.service import service_context

router = APIRouter(prefix="/v1", tags=["referral"])
router.include_router(audit.router)

Context = Annotated[ServiceContext[ReferralSettings], Depends(service_context)]
# Who may call what (docs/security.md); which patients' records is decided per request below.
Staff = Annotated[Principal, Depends(allow("clinician", "coordinator"))]
Coordinator = Annotated[Principal, Depends(allow("coordinator"))]
Clinician = Annotated[Principal, Depends(allow("clinician"))]
Patient = Annotated[Principal, Depends(allow("patient"))]
PatientOrClinician = Annotated[Principal, Depends(allow("patient", "clinician"))]
AnyCareRole = Annotated[Principal, Depends(allow("patient", "clinician", "coordinator"))]
PatientPath = Annotated[PatientId, Path(description="Opaque patient id")]
TherapistPath = Annotated[ClinicianId, Path(description="Opaque therapist id, e.g. thr-ny-1")]


def _invalid(location: tuple[str, ...], reason: str) -> RequestValidationError:
    """A 422 in the shared error format, for checks that span several parameters."""
    return RequestValidationError([{"loc": location, "msg": reason, "type": "value_error"}])


# --- therapists ----------------------------------------------------------------------------


def _therapist_out(therapist: domain.Therapist, load: int) -> TherapistOut:
    return TherapistOut(
        id=therapist.id,
        licence_states=sorted(therapist.licence_states),
        modalities=sorted(therapist.modalities),
        capacity=therapist.capacity,
        active=therapist.active,
        active_patients=load,
        free_places=max(therapist.capacity - load, 0),
    )


@router.get("/therapists")
async def list_therapists(
    ctx: Context,
    _caller: Staff,
    state: Annotated[StateCode | None, Query(description="Licensed in this state")] = None,
    modality: Modality | None = None,
    active: bool | None = None,
) -> TherapistList:
    found = await roster.list_therapists(ctx, state=state, modality=modality, active=active)
    return TherapistList(therapists=[_therapist_out(t, load) for t, load in found])


@router.get("/therapists/{therapist_id}")
async def get_therapist(ctx: Context, _caller: Staff, therapist_id: TherapistPath) -> TherapistOut:
    return _therapist_out(*await roster.get_therapist(ctx, therapist_id))


@router.put(
    "/therapists/{therapist_id}",
    responses={201: {"description": "Created"}, 200: {"description": "Replaced"}},
)
async def put_therapist(
    ctx: Context,
    _caller: Coordinator,
    therapist_id: TherapistPath,
    body: TherapistBody,
    response: Response,
) -> TherapistOut:
    """Create or replace a therapist's matching view; new places go to the waitlist at once."""
    therapist, load, created = await roster.put_therapist(ctx, therapist_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return _therapist_out(therapist, load)


# --- referrals -----------------------------------------------------------------------------


def _referral_out(referral: domain.Referral) -> ReferralOut:
    return ReferralOut.model_validate(referral, from_attributes=True)


@router.post(
    "/referrals",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "The same request again: the referral it opened"}},
)
async def open_referral(
    ctx: Context, caller: Staff, body: ReferralRequest, response: Response
) -> ReferralOut:
    """Refer a patient to therapy: one of the patient's psychiatrists in their own name, or a
    coordinator on behalf of one (`requesting_clinician_id` must be a psychiatrist the patient
    has a psychiatric visit with). Matched at once when someone is free."""
    referral, created = await referrals.open_for_psychiatrist(ctx, caller, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _referral_out(referral)


@router.get("/referrals")
async def list_referrals(
    ctx: Context,
    caller: AnyCareRole,
    patient_id: PatientId | None = None,
    status: domain.ReferralStatus | None = None,
    therapist_id: ClinicianId | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ReferralList:
    """Referrals, oldest first; e.g. `?status=on-hold` is the waitlist (coordinators). Patients
    and clinicians name a patient they may see, or a therapist themselves (`therapist_id`: their
    active referrals only)."""
    found = await referrals.list_visible(
        ctx, caller, patient_id=patient_id, status=status, therapist_id=therapist_id, limit=limit
    )
    return ReferralList(referrals=[_referral_out(r) for r in found])


@router.get("/referrals/{referral_id}")
async def get_referral(ctx: Context, caller: AnyCareRole, referral_id: UUID) -> ReferralOut:
    return _referral_out(await referrals.get(ctx, caller, referral_id))


@router.post("/referrals/{referral_id}/revoke")
async def revoke_referral(ctx: Context, caller: AnyCareRole, referral_id: UUID) -> ReferralOut:
    """Withdraw a referral (the patient, a clinician who treats them now, a coordinator): never
    matched afterwards; a care team it formed ends."""
    return _referral_out(await referrals.close(ctx, caller, referral_id, "revoke"))


@router.post("/referrals/{referral_id}/complete")
async def complete_referral(ctx: Context, caller: Staff, referral_id: UUID) -> ReferralOut:
    """The therapy episode is over (a clinician who treats the patient now, a coordinator): the
    patient leaves the care team, the place is freed."""
    return _referral_out(await referrals.close(ctx, caller, referral_id, "complete"))


# --- patients: care team and consents ------------------------------------------------------


@router.get("/patients/{patient_id}/care-team")
async def get_care_team(ctx: Context, caller: AnyCareRole, patient_id: PatientPath) -> CareTeamOut:
    team = await care_teams.get_active(ctx, caller, patient_id)
    return CareTeamOut.model_validate(team, from_attributes=True)


def _consent_out(consent: domain.Consent) -> ConsentOut:
    return ConsentOut.model_validate(consent, from_attributes=True)


@router.post(
    "/patients/{patient_id}/consents",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Already granted: nothing changed"}},
)
async def grant_consent(
    ctx: Context, caller: Patient, patient_id: PatientPath, body: ConsentRequest, response: Response
) -> ConsentOut:
    """Only the patient grants their consent."""
    consent, created = await consents.grant(ctx, caller, patient_id, body.scope)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _consent_out(consent)


@router.get("/patients/{patient_id}/consents")
async def list_consents(
    ctx: Context, caller: PatientOrClinician, patient_id: PatientPath
) -> ConsentList:
    found = await consents.list_for(ctx, caller, patient_id)
    return ConsentList(consents=[_consent_out(c) for c in found])


@router.get("/patients/{patient_id}/consents/{scope}")
async def get_consent(
    ctx: Context, caller: PatientOrClinician, patient_id: PatientPath, scope: ConsentScope
) -> ConsentOut:
    return _consent_out(await consents.get(ctx, caller, patient_id, scope))


@router.delete("/patients/{patient_id}/consents/{scope}")
async def revoke_consent(
    ctx: Context, caller: Patient, patient_id: PatientPath, scope: ConsentScope
) -> ConsentOut:
    """Only the patient revokes their consent."""
    return _consent_out(await consents.revoke(ctx, caller, patient_id, scope))


# --- care plans ----------------------------------------------------------------------------


def _plan_out(
    plan: domain.CarePlan, response: Response, trend: domain.OutcomeTrend | None = None
) -> CarePlanOut:
    response.headers["ETag"] = domain.etag(plan.version)
    return CarePlanOut.model_validate(
        {
            **plan.content,
            "patient_id": plan.patient_id,
            "version": plan.version,
            "updated_at": plan.updated_at,
            "updated_by": plan.author_id,
            "updated_by_role": plan.author_role,
            "outcomes": None if trend is None else OutcomeTrendOut.of(trend),
        }
    )


def _expected_version(if_match: str | None, body_version: int | None) -> int | None:
    if if_match is None:
        return body_version
    version = domain.parse_version_tag(if_match)
    if version is None:
        raise _invalid(("header", "if-match"), 'If-Match must be a plan version such as "3"')
    if body_version is not None and body_version != version:
        raise _invalid(("body", "version"), "version and If-Match disagree")
    return version


@router.get("/care-plans/{patient_id}")
async def get_care_plan(
    ctx: Context, caller: PatientOrClinician, patient_id: PatientPath, response: Response
) -> CarePlanOut:
    """The shared plan (version 0 when nobody wrote it yet) with the patient's latest PHQ-9 /
    GAD-7 measures and their trend (scores, bands, change from baseline, response, remission;
    never the answers), for the patient and their care team (the therapist with the patient's
    care_plan_sharing consent)."""
    plan, trend = await care_plans.read(ctx, patient_id, caller)
    return _plan_out(plan, response, trend)


@router.put("/care-plans/{patient_id}")
async def put_care_plan(
    ctx: Context,
    patient_id: PatientPath,
    caller: Clinician,
    body: CarePlanWrite,
    response: Response,
    if_match: Annotated[
        str | None, Header(description='The version the change is based on, e.g. "3"')
    ] = None,
) -> CarePlanOut:
    """Replace the plan; `If-Match` (or `version`) must name the current version."""
    expected = _expected_version(if_match, body.version)
    plan = await care_plans.write(ctx, patient_id, caller, expected, body.content())
    return _plan_out(plan, response)
