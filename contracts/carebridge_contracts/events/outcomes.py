"""Measurement-based care events: repeat PHQ-9 / GAD-7 measures (topic: assessments, from intake)
and the earlier follow-up booking offers on worsening (topic: appointments, from booking).

Scores, bands and changes only: never the item answers.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self
from uuid import UUID

from pydantic import Field, Strict, StrictBool, model_validator

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import ClinicianId, UtcDatetime, check_interval
from carebridge_contracts.events.intake import (
    Gad7Band,
    Gad7Total,
    Phq9Band,
    Phq9Total,
    gad7_band,
    phq9_band,
)
from carebridge_contracts.topics import Topic

__all__ = [
    "EarlierFollowUpOffered",
    "OutcomeMeasured",
    "SymptomsWorsened",
]  # the events; the registry finds them by `topic`

Measure = Literal["phq9", "gad7"]
WorseningReason = Literal["phq9_rise", "phq9_band_up", "gad7_rise", "gad7_band_up"]

Phq9Change = Annotated[int, Strict(), Field(ge=-27, le=27)]
Gad7Change = Annotated[int, Strict(), Field(ge=-21, le=21)]


def _check_bands(phq9_total: int, phq9: str, gad7_total: int, gad7: str, prefix: str) -> None:
    if phq9 != phq9_band(phq9_total):
        raise ValueError(f"{prefix}phq9_band {phq9!r} does not match total {phq9_total}")
    if gad7 != gad7_band(gad7_total):
        raise ValueError(f"{prefix}gad7_band {gad7!r} does not match total {gad7_total}")


class OutcomeMeasured(BaseEvent):
    """A patient in care repeated the PHQ-9 and GAD-7: scores, bands, the change from their
    baseline (negative is better) and the published response/remission verdicts (intake's
    outcomes module cites them)."""

    topic: ClassVar[Topic] = Topic.ASSESSMENTS
    event_version: ClassVar[int] = 1

    assessment_id: UUID
    baseline_assessment_id: UUID
    # The follow-up visit the measure was taken before; None when taken on demand.
    appointment_id: UUID | None = None
    phq9_total: Phq9Total
    phq9_band: Phq9Band
    gad7_total: Gad7Total
    gad7_band: Gad7Band
    baseline_phq9_total: Phq9Total
    baseline_gad7_total: Gad7Total
    phq9_change: Phq9Change
    gad7_change: Gad7Change
    phq9_meaningful_change: StrictBool
    gad7_meaningful_change: StrictBool
    phq9_response: StrictBool
    phq9_remission: StrictBool
    gad7_response: StrictBool
    gad7_remission: StrictBool
    measured_at: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_bands(self.phq9_total, self.phq9_band, self.gad7_total, self.gad7_band, "")
        if self.phq9_change != self.phq9_total - self.baseline_phq9_total:
            raise ValueError("phq9_change must be phq9_total - baseline_phq9_total")
        if self.gad7_change != self.gad7_total - self.baseline_gad7_total:
            raise ValueError("gad7_change must be gad7_total - baseline_gad7_total")
        return self


class SymptomsWorsened(BaseEvent):
    """A repeat measure is worse than the one before: a rise of at least the measure's minimal
    clinically important difference, or a more severe band. The care team is told; booking
    offers the psychiatrist an earlier follow-up."""

    topic: ClassVar[Topic] = Topic.ASSESSMENTS
    event_version: ClassVar[int] = 1

    assessment_id: UUID
    previous_assessment_id: UUID
    reasons: Annotated[list[WorseningReason], Field(min_length=1)]
    phq9_total: Phq9Total
    phq9_band: Phq9Band
    gad7_total: Gad7Total
    gad7_band: Gad7Band
    previous_phq9_total: Phq9Total
    previous_phq9_band: Phq9Band
    previous_gad7_total: Gad7Total
    previous_gad7_band: Gad7Band
    detected_at: UtcDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_bands(self.phq9_total, self.phq9_band, self.gad7_total, self.gad7_band, "")
        _check_bands(
            self.previous_phq9_total,
            self.previous_phq9_band,
            self.previous_gad7_total,
            self.previous_gad7_band,
            "previous_",
        )
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("reasons must not repeat")
        return self


class EarlierFollowUpOffered(BaseEvent):
    """Symptoms worsened before a booked psychiatric follow-up: booking found a free slot of the
    same psychiatrist before it (licensed where the visit takes place) and offers it."""

    topic: ClassVar[Topic] = Topic.APPOINTMENTS
    event_version: ClassVar[int] = 1

    appointment_id: UUID
    clinician_id: ClinicianId
    assessment_id: UUID  # the repeat measure that showed the worsening
    booked_starts_at: UtcDatetime
    offered_starts_at: UtcDatetime
    offered_ends_at: UtcDatetime

    @model_validator(mode="after")
    def _earlier(self) -> Self:
        check_interval(self.offered_starts_at, self.offered_ends_at)
        if self.offered_starts_at >= self.booked_starts_at:
            raise ValueError("offered_starts_at must be before booked_starts_at")
        return self
