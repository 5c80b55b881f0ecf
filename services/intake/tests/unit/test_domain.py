"""Scoring rules of the intake assessment, table-driven, plus properties."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carebridge_contracts import AssessmentCompleted, SafetyRiskFlagged
from carebridge_contracts.events.intake import gad7_band, phq9_band
from carebridge_intake import domain
from carebridge_intake.domain import Answers, Cssrs

PHQ9_ORDER = ["minimal", "mild", "moderate", "moderately_severe", "severe"]
GAD7_ORDER = ["minimal", "mild", "moderate", "severe"]
NO_CSSRS_RISK = Cssrs(False, False, False, False, False, False)
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def answers_with_total(total: int, items: int) -> list[int]:
    """`items` answers 0-3 adding up to `total`, item 9 (if any) left at 0 when possible."""
    result = [0] * items
    remaining = total
    for index in range(items):
        result[index] = min(3, remaining)
        remaining -= result[index]
    assert remaining == 0
    return result


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_band_edges(total: int, band: str) -> None:
    answers = answers_with_total(total, domain.PHQ9_ITEMS)
    assert domain.score_phq9(answers)[:2] == (total, band)


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_band_edges(total: int, band: str) -> None:
    answers = answers_with_total(total, domain.GAD7_ITEMS)
    assert domain.score_gad7(answers) == (total, band)


@pytest.mark.parametrize(
    ("phq9", "item9_positive"),
    [
        ([0] * 9, False),
        ([3] * 8 + [0], False),  # severe total, no self-harm thoughts: no flag
        ([0] * 8 + [1], True),  # minimal total, item 9 above 0: flag all the same
        ([0] * 8 + [3], True),
        ([3] * 9, True),
    ],
)
def test_item9_above_zero_is_a_flag_whatever_the_total(
    phq9: list[int], item9_positive: bool
) -> None:
    assert domain.score_phq9(phq9)[2] is item9_positive
    scores = domain.score(Answers(tuple(phq9), (0,) * 7))
    assert scores.item9_positive is item9_positive
    assert scores.at_risk is item9_positive
    assert scores.cssrs_imminent_risk is False
    assert scores.safety_reasons == (("phq9_item9",) if item9_positive else ())


def _cssrs(**yes: bool) -> Cssrs:
    fields = dict.fromkeys(
        (
            "q1_wish_to_be_dead",
            "q2_suicidal_thoughts",
            "q3_method",
            "q4_intent",
            "q5_plan",
            "q6_behaviour",
        ),
        False,
    )
    return Cssrs(**{**fields, **yes})


@pytest.mark.parametrize(
    ("cssrs", "reasons"),
    [
        (None, ()),
        (NO_CSSRS_RISK, ()),
        (_cssrs(q1_wish_to_be_dead=True), ()),
        (_cssrs(q1_wish_to_be_dead=True, q2_suicidal_thoughts=True), ()),
        (_cssrs(q2_suicidal_thoughts=True, q3_method=True), ()),
        (_cssrs(q2_suicidal_thoughts=True, q4_intent=True), ("cssrs_q4",)),
        (_cssrs(q2_suicidal_thoughts=True, q5_plan=True), ("cssrs_q5",)),
        (_cssrs(q4_intent=True, q5_plan=True), ("cssrs_q4", "cssrs_q5")),
        (_cssrs(q6_behaviour=True, q6_within_past_3_months=True), ("cssrs_recent_behaviour",)),
        (_cssrs(q6_behaviour=True, q6_within_past_3_months=False), ()),  # lifetime only
        (_cssrs(q6_behaviour=False, q6_within_past_3_months=True), ()),  # timing without Q6
        (
            _cssrs(q4_intent=True, q5_plan=True, q6_behaviour=True, q6_within_past_3_months=True),
            ("cssrs_q4", "cssrs_q5", "cssrs_recent_behaviour"),
        ),
    ],
)
def test_cssrs_imminent_risk_paths(cssrs: Cssrs | None, reasons: tuple[str, ...]) -> None:
    assert domain.cssrs_reasons(cssrs) == reasons
    scores = domain.score(Answers((0,) * 9, (0,) * 7, cssrs))
    assert scores.cssrs_imminent_risk is bool(reasons)
    assert scores.safety_reasons == reasons


def test_item9_and_cssrs_reasons_combine_in_order() -> None:
    scores = domain.score(Answers((0,) * 8 + (2,), (0,) * 7, _cssrs(q5_plan=True)))
    assert scores.safety_reasons == ("phq9_item9", "cssrs_q5")
    assert scores.cssrs_imminent_risk


@pytest.mark.parametrize(
    ("phq9", "gad7", "message"),
    [
        ([0] * 8, [0] * 7, "PHQ-9 needs exactly 9 answers"),
        ([0] * 10, [0] * 7, "PHQ-9 needs exactly 9 answers"),
        ([0] * 9, [0] * 6, "GAD-7 needs exactly 7 answers"),
        ([0] * 8 + [4], [0] * 7, "PHQ-9 item 9 must be 0-3"),
        ([0] * 9, [-1] + [0] * 6, "GAD-7 item 1 must be 0-3"),
    ],
)
def test_score_rejects_malformed_answers(phq9: list[int], gad7: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        domain.score(Answers(tuple(phq9), tuple(gad7)))


def test_no_risk_means_no_guidance() -> None:
    assert domain.safety_guidance(domain.score(Answers((1,) * 8 + (0,), (1,) * 7))) is None


def test_item9_risk_shows_988_without_pausing_self_booking() -> None:
    guidance = domain.safety_guidance(domain.score(Answers((0,) * 8 + (1,), (0,) * 7)))
    assert guidance is not None
    assert "call or text 988" in guidance.crisis_message
    assert "call 911" in guidance.crisis_message
    assert guidance.imminent is False
    assert guidance.self_booking_paused is False
    assert guidance.urgent_clinician_review is False
    assert guidance.note is None


def test_imminent_risk_pauses_self_booking_and_asks_for_urgent_review() -> None:
    guidance = domain.safety_guidance(
        domain.score(Answers((0,) * 9, (0,) * 7, _cssrs(q4_intent=True)))
    )
    assert guidance is not None
    assert guidance.crisis_message == domain.CRISIS_MESSAGE
    assert guidance.imminent and guidance.self_booking_paused and guidance.urgent_clinician_review
    assert guidance.note is not None
    assert "urgently" in guidance.note and "Self-booking is paused" in guidance.note


def _assessment(answers: Answers) -> domain.Assessment:
    return domain.assess(
        assessment_id=UUID(int=7),
        patient_id="pat-1",
        state="NY",
        answers=answers,
        therapy_interest=True,
        preferred_channel="sms",
        completed_at=T0,
    )


def test_events_for_a_safe_assessment_is_only_assessment_completed() -> None:
    events = domain.events_for(_assessment(Answers((2,) * 8 + (0,), (3,) * 7)))
    assert events == [
        AssessmentCompleted(
            patient_id="pat-1",
            assessment_id=UUID(int=7),
            state="NY",
            phq9_total=16,
            phq9_band="moderately_severe",
            gad7_total=21,
            gad7_band="severe",
            item9_positive=False,
            cssrs_imminent_risk=False,
            therapy_interest=True,
            preferred_channel="sms",
            completed_at=T0,
        )
    ]


@pytest.mark.parametrize(
    ("answers", "reasons", "imminent"),
    [
        (Answers((0,) * 8 + (1,), (0,) * 7), ["phq9_item9"], False),
        (Answers((0,) * 9, (0,) * 7, _cssrs(q5_plan=True)), ["cssrs_q5"], True),
        (
            Answers(
                (0,) * 8 + (3,), (0,) * 7, _cssrs(q6_behaviour=True, q6_within_past_3_months=True)
            ),
            ["phq9_item9", "cssrs_recent_behaviour"],
            True,
        ),
    ],
)
def test_events_for_a_risky_assessment_adds_safety_risk_flagged(
    answers: Answers, reasons: list[str], imminent: bool
) -> None:
    completed, flagged = domain.events_for(_assessment(answers))
    assert isinstance(completed, AssessmentCompleted)
    assert completed.cssrs_imminent_risk is imminent
    assert flagged == SafetyRiskFlagged(
        patient_id="pat-1",
        assessment_id=UUID(int=7),
        state="NY",
        reasons=reasons,
        imminent=imminent,
        flagged_at=T0,
    )


items = st.integers(min_value=0, max_value=3)
phq9_answers = st.lists(items, min_size=9, max_size=9)
gad7_answers = st.lists(items, min_size=7, max_size=7)


@given(phq9=phq9_answers, gad7=gad7_answers)
def test_totals_are_sums_and_bands_follow_the_contract(phq9: list[int], gad7: list[int]) -> None:
    scores = domain.score(Answers(tuple(phq9), tuple(gad7)))
    assert scores.phq9_total == sum(phq9)
    assert scores.gad7_total == sum(gad7)
    assert scores.phq9_band == phq9_band(sum(phq9))
    assert scores.gad7_band == gad7_band(sum(gad7))
    assert scores.item9_positive is (phq9[8] > 0)


@given(low=phq9_answers, bump=st.lists(items, min_size=9, max_size=9))
def test_phq9_band_is_monotone_in_the_answers(low: list[int], bump: list[int]) -> None:
    high = [min(3, a + b) for a, b in zip(low, bump, strict=True)]
    low_band = domain.score_phq9(low)[1]
    high_band = domain.score_phq9(high)[1]
    assert PHQ9_ORDER.index(low_band) <= PHQ9_ORDER.index(high_band)


@given(low=gad7_answers, bump=st.lists(items, min_size=7, max_size=7))
def test_gad7_band_is_monotone_in_the_answers(low: list[int], bump: list[int]) -> None:
    high = [min(3, a + b) for a, b in zip(low, bump, strict=True)]
    low_band = domain.score_gad7(low)[1]
    high_band = domain.score_gad7(high)[1]
    assert GAD7_ORDER.index(low_band) <= GAD7_ORDER.index(high_band)
