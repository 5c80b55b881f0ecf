"""Request and response bodies of the intake API."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, model_validator

from carebridge_contracts.events.common import Channel, PatientId, StateCode
from carebridge_contracts.events.intake import Gad7Band, Phq9Band, SafetyReason
from carebridge_intake import domain, outcomes
from carebridge_intake.domain import Answers, Assessment, Cssrs
from carebridge_intake.repeat_measures import Recorded

Item = Annotated[int, Strict(), Field(ge=domain.ITEM_MIN, le=domain.ITEM_MAX)]
Phq9Answers = Annotated[
    list[Item], Field(min_length=domain.PHQ9_ITEMS, max_length=domain.PHQ9_ITEMS)
]
Gad7Answers = Annotated[
    list[Item], Field(min_length=domain.GAD7_ITEMS, max_length=domain.GAD7_ITEMS)
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
    def of(cls, recorded: Recorded) -> Self:
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
