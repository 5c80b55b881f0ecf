"""The request model of POST /v1/assessments (pure: no app, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from carebridge_intake.models import AssessmentIn

NO_RISK = {
    "q1_wish_to_be_dead": False,
    "q2_suicidal_thoughts": False,
    "q3_method": False,
    "q4_intent": False,
    "q5_plan": False,
    "q6_behaviour": False,
}


def payload(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "patient_id": "pat-1",
        "state": "TX",
        "phq9": [0] * 9,
        "gad7": [0] * 7,
        "therapy_interest": False,
        "preferred_channel": "sms",
    }
    return {**base, **overrides}


def test_cssrs_is_optional() -> None:
    model = AssessmentIn.model_validate_json(json.dumps(payload()))
    assert model.answers().cssrs is None


def test_recent_behaviour_reaches_the_domain() -> None:
    cssrs = {**NO_RISK, "q6_behaviour": True, "q6_within_past_3_months": True}
    answers = AssessmentIn.model_validate(payload(cssrs=cssrs)).answers()
    assert answers.cssrs is not None and answers.cssrs.recent_behaviour


def test_timing_may_be_left_out_when_there_was_no_behaviour() -> None:
    answers = AssessmentIn.model_validate(payload(cssrs=NO_RISK)).answers()
    assert answers.cssrs is not None and not answers.cssrs.q6_within_past_3_months


@pytest.mark.parametrize(
    "cssrs",
    [
        {**NO_RISK, "q4_intent": "yes"},
        {**NO_RISK, "q5_plan": 1},
        {k: v for k, v in NO_RISK.items() if k != "q3_method"},
    ],
)
def test_cssrs_answers_are_strict_yes_no(cssrs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AssessmentIn.model_validate_json(json.dumps(payload(cssrs=cssrs)))


def test_fingerprint_ignores_key_order_and_tracks_content() -> None:
    a = AssessmentIn.model_validate(payload())
    b = AssessmentIn.model_validate(dict(reversed(list(payload().items()))))
    c = AssessmentIn.model_validate(payload(phq9=[0] * 8 + [1]))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
