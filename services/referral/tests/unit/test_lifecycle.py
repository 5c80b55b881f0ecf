"""Referral statuses (FHIR ServiceRequest) and the intake urgency rule."""

from __future__ import annotations

import itertools

import pytest

from carebridge_contracts.events.intake import Gad7Band, Phq9Band
from carebridge_referral.domain import (
    Action,
    ReferralStatus,
    intake_urgency,
    next_status,
    transition_refusal,
)

STATUSES: tuple[ReferralStatus, ...] = ("draft", "active", "on-hold", "revoked", "completed")
ACTIONS: tuple[Action, ...] = ("match", "hold", "revoke", "complete")


@pytest.mark.parametrize(
    ("status", "matched", "action", "expected"),
    [
        ("active", False, "match", "active"),
        ("active", False, "hold", "on-hold"),
        ("on-hold", False, "match", "active"),
        ("on-hold", False, "hold", "on-hold"),
        ("active", False, "revoke", "revoked"),
        ("on-hold", False, "revoke", "revoked"),
        ("draft", False, "revoke", "revoked"),
        ("active", True, "complete", "completed"),
        ("active", True, "revoke", "revoked"),
        # a matched referral is not matched or held again
        ("active", True, "match", None),
        ("active", True, "hold", None),
        # only a matched referral can be completed
        ("active", False, "complete", None),
        ("on-hold", False, "complete", None),
    ],
)
def test_transitions(
    status: ReferralStatus, matched: bool, action: Action, expected: ReferralStatus | None
) -> None:
    assert next_status(status, matched, action) == expected


@pytest.mark.parametrize(
    ("status", "matched", "action"),
    list(itertools.product(("revoked", "completed"), (False, True), ACTIONS)),
)
def test_revoked_and_completed_referrals_are_final(
    status: ReferralStatus, matched: bool, action: Action
) -> None:
    assert next_status(status, matched, action) is None
    refusal = transition_refusal(status, matched, action)
    assert refusal is not None
    assert refusal.code == "illegal_transition"
    assert refusal.extra == {"current_status": status, "action": action}


def test_a_revoked_referral_is_never_matched() -> None:
    assert all(next_status("revoked", matched, "match") is None for matched in (False, True))


def test_an_allowed_transition_is_not_refused() -> None:
    assert transition_refusal("on-hold", False, "revoke") is None


PHQ9: tuple[Phq9Band, ...] = ("minimal", "mild", "moderate", "moderately_severe", "severe")
GAD7: tuple[Gad7Band, ...] = ("minimal", "mild", "moderate", "severe")


@pytest.mark.parametrize(("phq9", "gad7"), list(itertools.product(PHQ9, GAD7)))
def test_intake_urgency(phq9: Phq9Band, gad7: Gad7Band) -> None:
    urgent = phq9 in ("moderately_severe", "severe") or gad7 == "severe"
    assert intake_urgency(phq9, gad7) == ("urgent" if urgent else "routine")


@pytest.mark.parametrize(
    ("phq9", "gad7", "expected"),
    [
        ("moderate", "moderate", "routine"),
        ("moderately_severe", "minimal", "urgent"),
        ("severe", "minimal", "urgent"),
        ("minimal", "severe", "urgent"),
        ("mild", "mild", "routine"),
    ],
)
def test_intake_urgency_examples(phq9: Phq9Band, gad7: Gad7Band, expected: str) -> None:
    assert intake_urgency(phq9, gad7) == expected
