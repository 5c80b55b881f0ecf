"""Request and response bodies of the referral API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from carebridge_contracts.events.common import (
    ClinicianId,
    ClinicianRole,
    Modality,
    PatientId,
    StateCode,
    Urgency,
)
from carebridge_contracts.events.intake import Gad7Band, Phq9Band
from carebridge_contracts.events.referral import (
    CareTeamEndReason,
    ConsentScope,
    RequestedBy,
    WaitlistReason,
)
from carebridge_referral.domain import MeasureKind, OutcomePoint, OutcomeTrend, ReferralStatus


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list[Any], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")


# --- therapists ----------------------------------------------------------------------------


class TherapistBody(Request):
    """The matching view of a therapist, as PUT stores it (the id is in the path)."""

    licence_states: list[StateCode] = []
    modalities: list[Modality] = []
    capacity: Annotated[int, Field(ge=0, le=10_000)]
    active: bool = True

    @model_validator(mode="after")
    def _no_repeats(self) -> Self:
        _unique(self.licence_states, "licence_states")
        _unique(self.modalities, "modalities")
        return self


class SeedTherapist(TherapistBody):
    id: ClinicianId


class SeedFile(Request):
    therapists: list[SeedTherapist]


class TherapistOut(BaseModel):
    id: ClinicianId
    licence_states: list[StateCode]
    modalities: list[Modality]
    capacity: int
    active: bool
    active_patients: int
    free_places: int


class TherapistList(BaseModel):
    therapists: list[TherapistOut]


# --- referrals -----------------------------------------------------------------------------


class ReferralRequest(Request):
    """A psychiatrist asks for a therapist for a patient who is in `state`."""

    patient_id: PatientId
    state: StateCode
    modality: Modality
    urgency: Urgency = "routine"
    requesting_clinician_id: ClinicianId


class ReferralOut(BaseModel):
    id: UUID
    patient_id: PatientId
    state: StateCode
    modality: Modality
    urgency: Urgency
    requested_by: RequestedBy
    requesting_clinician_id: ClinicianId | None
    assessment_id: UUID | None
    status: ReferralStatus
    hold_reason: WaitlistReason | None
    therapist_id: ClinicianId | None
    care_team_id: UUID | None
    created_at: datetime
    updated_at: datetime
    matched_at: datetime | None
    closed_at: datetime | None


class ReferralList(BaseModel):
    referrals: list[ReferralOut]


class CareTeamOut(BaseModel):
    id: UUID
    patient_id: PatientId
    referral_id: UUID
    psychiatrist_id: ClinicianId | None
    therapist_id: ClinicianId
    status: str
    end_reason: CareTeamEndReason | None
    formed_at: datetime
    ended_at: datetime | None


# --- consents ------------------------------------------------------------------------------


class ConsentRequest(Request):
    scope: ConsentScope


class ConsentOut(BaseModel):
    patient_id: PatientId
    scope: ConsentScope
    consent_id: UUID
    status: str
    granted_at: datetime
    revoked_at: datetime | None


class ConsentList(BaseModel):
    consents: list[ConsentOut]


# --- care plans ----------------------------------------------------------------------------

Goal = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# ICD-10(-CM) code: a letter, a digit, a digit or A/B, then optionally a dot and 1-4 more.
DiagnosisCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9][0-9AB](\.[0-9A-Z]{1,4})?$")]
MedicationSummary = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
]


class TherapyFrequency(Request):
    sessions_per_month: Annotated[int, Field(ge=1, le=31)]


class CarePlanContent(Request):
    """The shared plan. Psychotherapy notes never belong here: unknown fields are rejected."""

    goals: Annotated[list[Goal], Field(max_length=20)] = []
    diagnosis_codes: Annotated[list[DiagnosisCode], Field(max_length=20)] = []
    medication_summary: MedicationSummary | None = None
    therapy_modality: Modality | None = None
    therapy_frequency: TherapyFrequency | None = None

    @model_validator(mode="after")
    def _codes_unique(self) -> Self:
        _unique(self.diagnosis_codes, "diagnosis_codes")
        return self

    def sections(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class OutcomePointOut(BaseModel):
    """One measure of the trend: scores and bands; for a repeat measure also the change from
    baseline (negative is better) and the response / remission verdicts. Never the answers."""

    assessment_id: UUID
    kind: MeasureKind
    measured_at: datetime
    phq9_total: int
    phq9_band: Phq9Band
    gad7_total: int
    gad7_band: Gad7Band
    phq9_change: int | None
    gad7_change: int | None
    phq9_meaningful_change: bool | None
    gad7_meaningful_change: bool | None
    phq9_response: bool | None
    phq9_remission: bool | None
    gad7_response: bool | None
    gad7_remission: bool | None


class OutcomeTrendOut(BaseModel):
    baseline: OutcomePointOut | None
    latest: OutcomePointOut | None
    trend: list[OutcomePointOut] = Field(description="Every measure, oldest first.")

    @classmethod
    def of(cls, trend: OutcomeTrend) -> Self:
        def point(p: OutcomePoint | None) -> OutcomePointOut | None:
            return None if p is None else OutcomePointOut.model_validate(p, from_attributes=True)

        return cls(
            baseline=point(trend.baseline),
            latest=point(trend.latest),
            trend=[OutcomePointOut.model_validate(p, from_attributes=True) for p in trend.points],
        )


class CarePlanWrite(CarePlanContent):
    """PUT body: the whole plan, and optionally the version it was based on (or If-Match)."""

    version: Annotated[int, Field(ge=0)] | None = None
    # Read-only (the measures are intake's): accepted so that a plan read can be sent back
    # changed, and ignored.
    outcomes: OutcomeTrendOut | None = None

    def content(self) -> CarePlanContent:
        return CarePlanContent.model_validate(self.model_dump(exclude={"version", "outcomes"}))


class CarePlanOut(CarePlanContent):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: PatientId
    version: int
    updated_at: datetime | None
    updated_by: ClinicianId | None
    updated_by_role: ClinicianRole | None
    outcomes: OutcomeTrendOut | None = Field(
        default=None, description="Latest measures and the trend (GET only)."
    )
