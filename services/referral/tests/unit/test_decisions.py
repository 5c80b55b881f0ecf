"""What a matching decision, a close or a new psychiatric visit does, and the events it causes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from carebridge_contracts import (
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    TherapistMatched,
)
from carebridge_referral.domain import (
    CareTeam,
    Referral,
    care_team_ended,
    close_reason,
    form_team,
    hold,
    new_referral,
    psychiatrist_change,
    therapist_requested,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def referral(**changes: object) -> Referral:
    opened = new_referral(
        "pat-1",
        "NY",
        "CBT",
        "routine",
        requested_by="psychiatrist",
        requesting_clinician_id="psy-ny-1",
        now=T0,
    )
    return replace(opened, **changes)  # type: ignore[arg-type]


def team(psychiatrist_id: str | None) -> CareTeam:
    return CareTeam(
        id=uuid4(),
        patient_id="pat-1",
        referral_id=uuid4(),
        psychiatrist_id=psychiatrist_id,
        therapist_id="thr-ny-1",
        status="active",
        formed_at=T0,
    )


def test_a_new_referral_is_active_unmatched_and_announced_with_its_terms() -> None:
    opened = referral()
    assert (opened.status, opened.matched, opened.hold_reason) == ("active", False, None)
    requested = therapist_requested(opened)
    assert (requested.referral_id, requested.state, requested.modality, requested.urgency) == (
        opened.id,
        "NY",
        "CBT",
        "routine",
    )
    assert requested.requesting_clinician_id == "psy-ny-1"


def test_a_match_forms_a_team_with_the_current_psychiatrist_and_announces_both() -> None:
    waiting = referral(status="on-hold", hold_reason="no_capacity")
    formed = form_team(waiting, "thr-ny-2", "psy-ny-9", T0)
    assert (formed.team.referral_id, formed.team.therapist_id, formed.team.psychiatrist_id) == (
        waiting.id,
        "thr-ny-2",
        "psy-ny-9",
    )
    assert formed.team.status == "active"
    matched, team_formed = formed.events
    assert isinstance(matched, TherapistMatched)
    assert isinstance(team_formed, CareTeamFormed)
    assert matched.psychiatrist_id == team_formed.psychiatrist_id == "psy-ny-9"
    assert team_formed.care_team_id == formed.team.id


@pytest.mark.parametrize(
    "taken", [{"therapist_id": "thr-ny-1"}, {"status": "revoked"}, {"status": "completed"}]
)
def test_only_a_waiting_referral_is_matched_or_held(taken: dict[str, object]) -> None:
    closed = referral(**taken)
    with pytest.raises(RuntimeError):
        form_team(closed, "thr-ny-2", None, T0)
    with pytest.raises(RuntimeError):
        hold(closed, "no_capacity")


def test_a_hold_is_announced_only_when_its_reason_changes() -> None:
    assert hold(referral(status="on-hold", hold_reason="no_capacity"), "no_capacity") is None
    changed = hold(referral(status="on-hold", hold_reason="no_capacity"), "awaiting_consent")
    assert changed is not None and changed.reason_code == "awaiting_consent"
    first = hold(referral(), "no_licensed_therapist")
    assert first is not None and first.reason_code == "no_licensed_therapist"


@pytest.mark.parametrize(("action", "reason"), [("revoke", "revoked"), ("complete", "completed")])
def test_closing_a_referral_ends_its_team_with_the_reason(action: str, reason: str) -> None:
    ending = team("psy-ny-1")
    ended = care_team_ended(ending, close_reason(action))  # type: ignore[arg-type]
    assert (ended.care_team_id, ended.referral_id, ended.reason_code) == (
        ending.id,
        ending.referral_id,
        reason,
    )
    assert (ended.therapist_id, ended.psychiatrist_id) == ("thr-ny-1", "psy-ny-1")


def test_the_team_follows_the_current_psychiatrist() -> None:
    assert psychiatrist_change(team("psy-ny-1"), "psy-ny-1") == []
    assert psychiatrist_change(team(None), None) == []

    (learnt,) = psychiatrist_change(team(None), "psy-ny-1")
    assert isinstance(learnt, CareTeamMemberJoined)
    assert (learnt.clinician_id, learnt.reason_code) == ("psy-ny-1", "psychiatrist_learnt")

    left, joined = psychiatrist_change(team("psy-ny-1"), "psy-ny-2")
    assert isinstance(left, CareTeamMemberLeft) and isinstance(joined, CareTeamMemberJoined)
    assert (left.clinician_id, left.reason_code) == ("psy-ny-1", "psychiatrist_changed")
    assert (joined.clinician_id, joined.reason_code) == ("psy-ny-2", "psychiatrist_changed")

    (gone,) = psychiatrist_change(team("psy-ny-1"), None)
    assert isinstance(gone, CareTeamMemberLeft)
    assert (gone.clinician_id, gone.reason_code) == ("psy-ny-1", "no_psychiatric_visit")
