"""Pure rules of measurement-based care: the change of a repeat PHQ-9 / GAD-7 from the
patient's baseline (their intake assessment), response, remission, and worsening.

Thresholds and where they come from:

PHQ-9
- Clinically meaningful change: a change of at least 5 points. Löwe B, Unützer J, Callahan CM,
  Perkins AJ, Kroenke K. Monitoring depression treatment outcomes with the Patient Health
  Questionnaire-9. Med Care 2004;42(12):1194-1201.
- Response: a reduction of at least 50% from baseline; remission: a total below 5. Kroenke K,
  Spitzer RL. The PHQ-9: a new depression diagnostic and severity measure. Psychiatr Ann
  2002;32(9):509-515.

GAD-7
- Minimal clinically important difference: 4 points. Toussaint A, Hüsing P, Gumz A, et al.
  Sensitivity to change and minimal clinically important difference of the 7-item Generalized
  Anxiety Disorder Questionnaire (GAD-7). J Affect Disord 2020;265:395-401,
  doi:10.1016/j.jad.2020.01.032.
- Response (at least 50% reduction from baseline) and remission (a total below 5) have no
  GAD-7-specific published definition that we rely on: they are taken over from the PHQ-9 by
  analogy, as measurement-based care programmes commonly do (both scales share the 0-4
  "minimal" band). This is a convention, not a validated GAD-7 cut-off.

Worsening (SymptomsWorsened) compares a repeat measure with the measure just before it (the
baseline for the first repeat): the PHQ-9 rising by at least its meaningful change (5) or
moving into a more severe band (the issue's definition); the GAD-7 rising by at least its
MCID (4) or moving into a more severe band, by the same reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args
from uuid import UUID

from carebridge_contracts import BaseEvent, OutcomeMeasured, SafetyRiskFlagged, SymptomsWorsened
from carebridge_contracts.events.intake import Gad7Band, Phq9Band
from carebridge_contracts.events.outcomes import WorseningReason
from carebridge_intake.domain import Scores

PHQ9_MEANINGFUL_CHANGE = 5  # Löwe et al. 2004
GAD7_MEANINGFUL_CHANGE = 4  # Toussaint et al. 2020 (MCID)
RESPONSE_REDUCTION = 0.5  # Kroenke & Spitzer 2002 (PHQ-9); GAD-7 by analogy
REMISSION_BELOW = 5  # Kroenke & Spitzer 2002 (PHQ-9); GAD-7 by analogy

PHQ9_BANDS: tuple[Phq9Band, ...] = get_args(Phq9Band)
GAD7_BANDS: tuple[Gad7Band, ...] = get_args(Gad7Band)


@dataclass(frozen=True, slots=True)
class Measure:
    """The scores of one assessment in a patient's trend (intake baseline or repeat)."""

    assessment_id: UUID
    phq9_total: int
    phq9_band: Phq9Band
    gad7_total: int
    gad7_band: Gad7Band
    measured_at: datetime

    @classmethod
    def of(cls, assessment_id: UUID, scores: Scores, measured_at: datetime) -> Measure:
        return cls(
            assessment_id,
            scores.phq9_total,
            scores.phq9_band,
            scores.gad7_total,
            scores.gad7_band,
            measured_at,
        )


def meaningful_change(baseline: int, current: int, threshold: int) -> bool:
    """Whether the score moved (either way) by at least the measure's meaningful change."""
    return abs(current - baseline) >= threshold


def response(baseline: int, current: int) -> bool:
    """At least a 50% reduction from a baseline above zero."""
    return baseline > 0 and (baseline - current) >= RESPONSE_REDUCTION * baseline


def remission(current: int) -> bool:
    return current < REMISSION_BELOW


def worsening(previous: Measure, current: Measure) -> tuple[WorseningReason, ...]:
    """Why `current` is worse than `previous` (empty when it is not)."""
    reasons: list[WorseningReason] = []
    if current.phq9_total - previous.phq9_total >= PHQ9_MEANINGFUL_CHANGE:
        reasons.append("phq9_rise")
    if PHQ9_BANDS.index(current.phq9_band) > PHQ9_BANDS.index(previous.phq9_band):
        reasons.append("phq9_band_up")
    if current.gad7_total - previous.gad7_total >= GAD7_MEANINGFUL_CHANGE:
        reasons.append("gad7_rise")
    if GAD7_BANDS.index(current.gad7_band) > GAD7_BANDS.index(previous.gad7_band):
        reasons.append("gad7_band_up")
    return tuple(reasons)


def outcome_measured(
    patient_id: str, baseline: Measure, current: Measure, appointment_id: UUID | None
) -> OutcomeMeasured:
    return OutcomeMeasured(
        patient_id=patient_id,
        assessment_id=current.assessment_id,
        baseline_assessment_id=baseline.assessment_id,
        appointment_id=appointment_id,
        phq9_total=current.phq9_total,
        phq9_band=current.phq9_band,
        gad7_total=current.gad7_total,
        gad7_band=current.gad7_band,
        baseline_phq9_total=baseline.phq9_total,
        baseline_gad7_total=baseline.gad7_total,
        phq9_change=current.phq9_total - baseline.phq9_total,
        gad7_change=current.gad7_total - baseline.gad7_total,
        phq9_meaningful_change=meaningful_change(
            baseline.phq9_total, current.phq9_total, PHQ9_MEANINGFUL_CHANGE
        ),
        gad7_meaningful_change=meaningful_change(
            baseline.gad7_total, current.gad7_total, GAD7_MEANINGFUL_CHANGE
        ),
        phq9_response=response(baseline.phq9_total, current.phq9_total),
        phq9_remission=remission(current.phq9_total),
        gad7_response=response(baseline.gad7_total, current.gad7_total),
        gad7_remission=remission(current.gad7_total),
        measured_at=current.measured_at,
    )


def symptoms_worsened(
    patient_id: str, previous: Measure, current: Measure
) -> SymptomsWorsened | None:
    reasons = worsening(previous, current)
    if not reasons:
        return None
    return SymptomsWorsened(
        patient_id=patient_id,
        assessment_id=current.assessment_id,
        previous_assessment_id=previous.assessment_id,
        reasons=list(reasons),
        phq9_total=current.phq9_total,
        phq9_band=current.phq9_band,
        gad7_total=current.gad7_total,
        gad7_band=current.gad7_band,
        previous_phq9_total=previous.phq9_total,
        previous_phq9_band=previous.phq9_band,
        previous_gad7_total=previous.gad7_total,
        previous_gad7_band=previous.gad7_band,
        detected_at=current.measured_at,
    )


def repeat_measure_events(
    *,
    patient_id: str,
    state: str,
    scores: Scores,
    current: Measure,
    baseline: Measure,
    previous: Measure,
    appointment_id: UUID | None,
) -> list[BaseEvent]:
    """SafetyRiskFlagged first when item 9 or the C-SSRS show risk (as at intake: the on-call
    alert must not wait behind anything else of the patient's), then OutcomeMeasured, then
    SymptomsWorsened when the measure is worse than the one before."""
    events: list[BaseEvent] = []
    if scores.at_risk:
        events.append(
            SafetyRiskFlagged(
                patient_id=patient_id,
                assessment_id=current.assessment_id,
                state=state,
                reasons=list(scores.safety_reasons),
                imminent=scores.cssrs_imminent_risk,
                flagged_at=current.measured_at,
            )
        )
    events.append(outcome_measured(patient_id, baseline, current, appointment_id))
    worse = symptoms_worsened(patient_id, previous, current)
    if worse is not None:
        events.append(worse)
    return events
