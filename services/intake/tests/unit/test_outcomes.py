"""Measurement-based care rules: change from baseline, response, remission, worsening."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from carebridge_contracts import OutcomeMeasured, SafetyRiskFlagged, SymptomsWorsened
from carebridge_intake import domain, outcomes
from carebridge_intake.domain import Answers, Cssrs
from carebridge_intake.outcomes import Measure

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PATIENT = "pat-1"


def measure(phq9: int, gad7: int, days: int = 0) -> Measure:
    from carebridge_contracts.events.intake import gad7_band, phq9_band

    return Measure(uuid.uuid4(), phq9, phq9_band(phq9), gad7, gad7_band(gad7), T0 + timedelta(days))


@pytest.mark.parametrize(
    ("baseline", "current", "meaningful"),
    [(12, 7, True), (12, 8, False), (7, 12, True), (0, 4, False), (20, 27, True)],
)
def test_phq9_meaningful_change_is_five_points_either_way(
    baseline: int, current: int, meaningful: bool
) -> None:
    assert outcomes.meaningful_change(baseline, current, 5) is meaningful


@pytest.mark.parametrize(
    ("baseline", "current", "responded"),
    [(20, 10, True), (20, 11, False), (15, 7, True), (15, 8, False), (0, 0, False), (1, 0, True)],
)
def test_response_is_at_least_half_the_baseline_gone(
    baseline: int, current: int, responded: bool
) -> None:
    assert outcomes.response(baseline, current) is responded


@pytest.mark.parametrize(("total", "remitted"), [(0, True), (4, True), (5, False), (27, False)])
def test_remission_is_below_five(total: int, remitted: bool) -> None:
    assert outcomes.remission(total) is remitted


def test_gad7_uses_its_own_mcid_of_four() -> None:
    assert outcomes.GAD7_MEANINGFUL_CHANGE == 4
    assert outcomes.worsening(measure(5, 5), measure(5, 9)) == ("gad7_rise",)
    assert outcomes.worsening(measure(5, 5), measure(5, 8)) == ()  # 3 points, same band


@pytest.mark.parametrize(
    ("previous", "current", "reasons"),
    [
        ((5, 3), (10, 3), ("phq9_rise", "phq9_band_up")),  # mild 5 -> moderate 10
        ((10, 3), (14, 3), ()),  # +4 within moderate: neither
        ((14, 3), (15, 3), ("phq9_band_up",)),  # +1 into moderately severe
        ((15, 3), (19, 3), ()),
        ((3, 4), (3, 5), ("gad7_band_up",)),  # minimal -> mild
        ((12, 10), (8, 3), ()),  # better is never worse
        ((2, 2), (9, 9), ("phq9_rise", "phq9_band_up", "gad7_rise", "gad7_band_up")),
    ],
)
def test_worsening_is_a_rise_by_the_mcid_or_a_more_severe_band(
    previous: tuple[int, int], current: tuple[int, int], reasons: tuple[str, ...]
) -> None:
    assert outcomes.worsening(measure(*previous), measure(*current)) == reasons


def test_outcome_measured_reports_change_from_baseline() -> None:
    baseline, current = measure(16, 12), measure(6, 4, days=30)
    appointment = uuid.uuid4()
    event = outcomes.outcome_measured(PATIENT, baseline, current, appointment)
    assert isinstance(event, OutcomeMeasured)
    assert (event.phq9_change, event.gad7_change) == (-10, -8)
    assert (event.baseline_phq9_total, event.baseline_gad7_total) == (16, 12)
    assert event.phq9_meaningful_change and event.gad7_meaningful_change
    assert event.phq9_response and event.gad7_response
    assert not event.phq9_remission and event.gad7_remission
    assert event.baseline_assessment_id == baseline.assessment_id
    assert event.appointment_id == appointment


def _scores(phq9: list[int], cssrs: Cssrs | None = None) -> domain.Scores:
    return domain.score(Answers(tuple(phq9), (1, 1, 1, 1, 1, 1, 0), cssrs))


def test_a_risky_repeat_measure_flags_safety_first_then_the_trend_events() -> None:
    cssrs = Cssrs(False, False, False, True, False, False)
    scores = _scores([3, 3, 3, 3, 3, 2, 2, 1, 1], cssrs)  # 21: severe, item 9 positive
    baseline, previous = measure(10, 6), measure(8, 6, days=20)
    current = Measure.of(uuid.uuid4(), scores, T0 + timedelta(days=40))
    events = outcomes.repeat_measure_events(
        patient_id=PATIENT,
        state="NY",
        scores=scores,
        current=current,
        baseline=baseline,
        previous=previous,
        appointment_id=None,
    )
    assert [type(e) for e in events] == [SafetyRiskFlagged, OutcomeMeasured, SymptomsWorsened]
    flagged = events[0]
    assert isinstance(flagged, SafetyRiskFlagged)
    assert flagged.reasons == ["phq9_item9", "cssrs_q4"] and flagged.imminent
    worse = events[2]
    assert isinstance(worse, SymptomsWorsened)
    assert worse.previous_assessment_id == previous.assessment_id  # compared with the last one
    assert worse.reasons == ["phq9_rise", "phq9_band_up"]


def test_an_improving_measure_emits_only_outcome_measured() -> None:
    scores = _scores([1, 1, 1, 0, 0, 0, 0, 0, 0])  # 3: minimal
    current = Measure.of(uuid.uuid4(), scores, T0)
    events = outcomes.repeat_measure_events(
        patient_id=PATIENT,
        state="NY",
        scores=scores,
        current=current,
        baseline=measure(12, 6),
        previous=measure(12, 6),
        appointment_id=None,
    )
    assert [type(e) for e in events] == [OutcomeMeasured]
