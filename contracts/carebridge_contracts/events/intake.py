"""Intake events (topic: assessments)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self
from uuid import UUID

from pydantic import Field, Strict, StrictBool, model_validator

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import Channel, StateCode, UtcDatetime
from carebridge_contracts.topics import Topic

__all__ = [
    "AssessmentCompleted",
    "SafetyRiskFlagged",
]  # the events; the registry finds them by `topic`

Phq9Band = Literal["minimal", "mild", "moderate", "moderately_severe", "severe"]
Gad7Band = Literal["minimal", "mild", "moderate", "severe"]
SafetyReason = Literal["phq9_item9", "cssrs_q4", "cssrs_q5", "cssrs_recent_behaviour"]

Phq9Total = Annotated[int, Strict(), Field(ge=0, le=27)]
Gad7Total = Annotated[int, Strict(), Field(ge=0, le=21)]


def phq9_band(total: int) -> Phq9Band:
    """PHQ-9 severity band: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe."""
    if not 0 <= total <= 27:
        raise ValueError(f"PHQ-9 total out of range: {total}")
    if total <= 4:
        return "minimal"
    if total <= 9:
        return "mild"
    if total <= 14:
        return "moderate"
    if total <= 19:
        return "moderately_severe"
    return "severe"


def gad7_band(total: int) -> Gad7Band:
    """GAD-7 severity band: 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe."""
    if not 0 <= total <= 21:
        raise ValueError(f"GAD-7 total out of range: {total}")
    if total <= 4:
        return "minimal"
    if total <= 9:
        return "mild"
    if total <= 14:
        return "moderate"
    return "severe"


class AssessmentCompleted(BaseEvent):
    """A patient finished the intake assessment; scores and bands, never answers."""

    topic: ClassVar[Topic] = Topic.ASSESSMENTS
    event_version: ClassVar[int] = 1

    assessment_id: UUID
    state: StateCode
    phq9_total: Phq9Total
    phq9_band: Phq9Band
    gad7_total: Gad7Total
    gad7_band: Gad7Band
    item9_positive: StrictBool
    cssrs_imminent_risk: StrictBool
    therapy_interest: StrictBool
    preferred_channel: Channel
    completed_at: UtcDatetime

    @model_validator(mode="after")
    def _bands_match_totals(self) -> Self:
        if self.phq9_band != phq9_band(self.phq9_total):
            raise ValueError(f"phq9_band {self.phq9_band!r} does not match total {self.phq9_total}")
        if self.gad7_band != gad7_band(self.gad7_total):
            raise ValueError(f"gad7_band {self.gad7_band!r} does not match total {self.gad7_total}")
        return self


class SafetyRiskFlagged(BaseEvent):
    """An assessment showed self-harm risk. If imminent: no self-booking, urgent clinician review."""

    topic: ClassVar[Topic] = Topic.ASSESSMENTS
    event_version: ClassVar[int] = 1

    assessment_id: UUID
    state: StateCode
    reasons: Annotated[list[SafetyReason], Field(min_length=1)]
    imminent: StrictBool
    flagged_at: UtcDatetime

    @model_validator(mode="after")
    def _cssrs_reasons_are_imminent(self) -> Self:
        # C-SSRS Q4, Q5 or recent behaviour is imminent risk by definition.
        if not self.imminent and any(r.startswith("cssrs_") for r in self.reasons):
            raise ValueError("a C-SSRS reason means imminent risk: imminent must be true")
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("reasons must not repeat")
        return self
