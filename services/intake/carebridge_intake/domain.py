"""Pure rules of the intake service: PHQ-9, GAD-7 and C-SSRS scoring, safety guidance, events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from carebridge_contracts import AssessmentCompleted, BaseEvent, SafetyRiskFlagged
from carebridge_contracts.events.common import Channel
from carebridge_contracts.events.intake import (
    Gad7Band,
    Phq9Band,
    SafetyReason,
    gad7_band,
    phq9_band,
)

PHQ9_ITEMS = 9
GAD7_ITEMS = 7
ITEM_MIN = 0
ITEM_MAX = 3
PHQ9_SELF_HARM_ITEM = 9  # 1-based, as printed on the questionnaire

CRISIS_MESSAGE = (
    "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline). "
    "If you are in immediate danger, call 911."
)
IMMINENT_RISK_NOTE = (
    "A clinician will review your answers urgently and contact you. "
    "Self-booking is paused until then."
)


@dataclass(frozen=True, slots=True)
class Cssrs:
    """The six yes/no answers of the C-SSRS screener."""

    q1_wish_to_be_dead: bool
    q2_suicidal_thoughts: bool
    q3_method: bool
    q4_intent: bool
    q5_plan: bool
    q6_behaviour: bool
    q6_within_past_3_months: bool = False

    @property
    def recent_behaviour(self) -> bool:
        # The timing answer only means something when behaviour was reported.
        return self.q6_behaviour and self.q6_within_past_3_months


@dataclass(frozen=True, slots=True)
class Answers:
    phq9: tuple[int, ...]
    gad7: tuple[int, ...]
    cssrs: Cssrs | None = None


@dataclass(frozen=True, slots=True)
class Scores:
    phq9_total: int
    phq9_band: Phq9Band
    gad7_total: int
    gad7_band: Gad7Band
    item9_positive: bool
    cssrs_imminent_risk: bool
    safety_reasons: tuple[SafetyReason, ...]

    @property
    def at_risk(self) -> bool:
        return bool(self.safety_reasons)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A scored assessment, as stored and reported (answers are kept only in the store)."""

    assessment_id: UUID
    patient_id: str
    state: str
    scores: Scores
    therapy_interest: bool
    preferred_channel: Channel
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class SafetyGuidance:
    """What the patient is shown when the assessment shows self-harm risk."""

    reasons: tuple[SafetyReason, ...]
    imminent: bool
    crisis_message: str
    urgent_clinician_review: bool
    self_booking_paused: bool
    note: str | None


def _check_items(name: str, answers: Sequence[int], count: int) -> None:
    if len(answers) != count:
        raise ValueError(f"{name} needs exactly {count} answers, got {len(answers)}")
    for position, answer in enumerate(answers, start=1):
        if isinstance(answer, bool) or not ITEM_MIN <= answer <= ITEM_MAX:
            raise ValueError(f"{name} item {position} must be {ITEM_MIN}-{ITEM_MAX}")


def score_phq9(answers: Sequence[int]) -> tuple[int, Phq9Band, bool]:
    """PHQ-9 total, band, and whether item 9 (thoughts of self-harm) is above 0."""
    _check_items("PHQ-9", answers, PHQ9_ITEMS)
    total = sum(answers)
    return total, phq9_band(total), answers[PHQ9_SELF_HARM_ITEM - 1] > 0


def score_gad7(answers: Sequence[int]) -> tuple[int, Gad7Band]:
    _check_items("GAD-7", answers, GAD7_ITEMS)
    total = sum(answers)
    return total, gad7_band(total)


def cssrs_reasons(cssrs: Cssrs | None) -> tuple[SafetyReason, ...]:
    """C-SSRS imminent-risk reasons: yes to Q4 (intent) or Q5 (plan), or behaviour in 3 months."""
    if cssrs is None:
        return ()
    reasons: list[SafetyReason] = []
    if cssrs.q4_intent:
        reasons.append("cssrs_q4")
    if cssrs.q5_plan:
        reasons.append("cssrs_q5")
    if cssrs.recent_behaviour:
        reasons.append("cssrs_recent_behaviour")
    return tuple(reasons)


def score(answers: Answers) -> Scores:
    phq9_total, phq9_level, item9_positive = score_phq9(answers.phq9)
    gad7_total, gad7_level = score_gad7(answers.gad7)
    imminent_reasons = cssrs_reasons(answers.cssrs)
    reasons: list[SafetyReason] = ["phq9_item9"] if item9_positive else []
    reasons.extend(imminent_reasons)
    return Scores(
        phq9_total=phq9_total,
        phq9_band=phq9_level,
        gad7_total=gad7_total,
        gad7_band=gad7_level,
        item9_positive=item9_positive,
        cssrs_imminent_risk=bool(imminent_reasons),
        safety_reasons=tuple(reasons),
    )


def assess(
    *,
    assessment_id: UUID,
    patient_id: str,
    state: str,
    answers: Answers,
    therapy_interest: bool,
    preferred_channel: Channel,
    completed_at: datetime,
) -> Assessment:
    return Assessment(
        assessment_id=assessment_id,
        patient_id=patient_id,
        state=state,
        scores=score(answers),
        therapy_interest=therapy_interest,
        preferred_channel=preferred_channel,
        completed_at=completed_at,
    )


def safety_guidance(scores: Scores) -> SafetyGuidance | None:
    """The 988 message for any risk; for imminent risk also urgent review and no self-booking."""
    if not scores.at_risk:
        return None
    imminent = scores.cssrs_imminent_risk
    return SafetyGuidance(
        reasons=scores.safety_reasons,
        imminent=imminent,
        crisis_message=CRISIS_MESSAGE,
        urgent_clinician_review=imminent,
        self_booking_paused=imminent,
        note=IMMINENT_RISK_NOTE if imminent else None,
    )


def events_for(assessment: Assessment) -> list[BaseEvent]:
    """AssessmentCompleted, then SafetyRiskFlagged when there is any risk."""
    scores = assessment.scores
    events: list[BaseEvent] = [
        AssessmentCompleted(
            patient_id=assessment.patient_id,
            assessment_id=assessment.assessment_id,
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
        )
    ]
    if scores.at_risk:
        events.append(
            SafetyRiskFlagged(
                patient_id=assessment.patient_id,
                assessment_id=assessment.assessment_id,
                state=assessment.state,
                reasons=list(scores.safety_reasons),
                imminent=scores.cssrs_imminent_risk,
                flagged_at=assessment.completed_at,
            )
        )
    return events
