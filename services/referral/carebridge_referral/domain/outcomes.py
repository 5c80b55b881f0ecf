"""The outcome trend shown with the care plan (measurement-based care).

No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

MeasureKind = Literal["intake", "repeat"]


@dataclass(frozen=True, slots=True)
class OutcomePoint:
    """One PHQ-9 / GAD-7 measure in the trend, as intake scored it; the change, response and
    remission verdicts (intake's outcomes module cites their definitions) are set for repeat
    measures only, against the baseline intake named."""

    assessment_id: UUID
    kind: MeasureKind
    measured_at: datetime
    phq9_total: int
    phq9_band: str
    gad7_total: int
    gad7_band: str
    baseline_assessment_id: UUID | None = None
    phq9_change: int | None = None
    gad7_change: int | None = None
    phq9_meaningful_change: bool | None = None
    gad7_meaningful_change: bool | None = None
    phq9_response: bool | None = None
    phq9_remission: bool | None = None
    gad7_response: bool | None = None
    gad7_remission: bool | None = None


@dataclass(frozen=True, slots=True)
class OutcomeTrend:
    baseline: OutcomePoint | None
    latest: OutcomePoint | None
    points: tuple[OutcomePoint, ...]


def outcome_trend(points: Sequence[OutcomePoint]) -> OutcomeTrend:
    """The baseline is the intake assessment the latest repeat measure was compared with (the
    first intake assessment while there is no repeat measure); latest is the newest measure."""
    latest = points[-1] if points else None
    repeats = [p for p in points if p.kind == "repeat"]
    baseline_id = repeats[-1].baseline_assessment_id if repeats else None
    by_id = {p.assessment_id: p for p in points}
    intakes = [p for p in points if p.kind == "intake"]
    baseline = by_id.get(baseline_id) if baseline_id else None
    if baseline is None and intakes:
        baseline = intakes[0]
    return OutcomeTrend(baseline=baseline, latest=latest, points=tuple(points))
