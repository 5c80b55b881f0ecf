"""What a decision does to a referral or a care team, and the events it causes.

No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from carebridge_contracts import (
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ReferralWaitlisted,
    TherapistMatched,
    TherapistRequested,
)
from carebridge_contracts.events.common import Modality, Urgency
from carebridge_contracts.events.referral import (
    CareTeamEndReason,
    MembershipReason,
    RequestedBy,
    WaitlistReason,
)
from carebridge_referral.domain.lifecycle import Action, CareTeam, Referral, next_status


def new_referral(
    patient_id: str,
    state: str,
    modality: Modality,
    urgency: Urgency,
    *,
    requested_by: RequestedBy,
    requesting_clinician_id: str | None,
    now: datetime,
    assessment_id: UUID | None = None,
) -> Referral:
    return Referral(
        id=uuid4(),
        patient_id=patient_id,
        state=state,
        modality=modality,
        urgency=urgency,
        requested_by=requested_by,
        requesting_clinician_id=requesting_clinician_id,
        assessment_id=assessment_id,
        status="active",
        hold_reason=None,
        therapist_id=None,
        care_team_id=None,
        created_at=now,
        updated_at=now,
    )


def therapist_requested(referral: Referral) -> TherapistRequested:
    """The referral's current terms, announced when it opens or a psychiatrist takes it over."""
    return TherapistRequested(
        patient_id=referral.patient_id,
        referral_id=referral.id,
        state=referral.state,
        modality=referral.modality,
        urgency=referral.urgency,
        requested_by=referral.requested_by,
        requesting_clinician_id=referral.requesting_clinician_id,
    )


def _require_transition(referral: Referral, action: Action) -> None:
    # The queue only holds open, unmatched referrals; a revoked one can never get here.
    if next_status(referral.status, referral.matched, action) is None:
        raise RuntimeError(f"referral {referral.id} cannot {action} from {referral.status}")


@dataclass(frozen=True, slots=True)
class Formed:
    """A match: the care team it forms and what it announces."""

    team: CareTeam
    events: tuple[TherapistMatched, CareTeamFormed]


def form_team(
    referral: Referral, therapist_id: str, psychiatrist_id: str | None, now: datetime
) -> Formed:
    """Match `referral` with the therapist; the team's psychiatrist is the patient's current
    one, whoever asked for the referral."""
    _require_transition(referral, "match")
    team = CareTeam(
        id=uuid4(),
        patient_id=referral.patient_id,
        referral_id=referral.id,
        psychiatrist_id=psychiatrist_id,
        therapist_id=therapist_id,
        status="active",
        formed_at=now,
    )
    matched = TherapistMatched(
        patient_id=referral.patient_id,
        referral_id=referral.id,
        therapist_id=therapist_id,
        psychiatrist_id=psychiatrist_id,
        modality=referral.modality,
        state=referral.state,
    )
    formed = CareTeamFormed(
        patient_id=referral.patient_id,
        care_team_id=team.id,
        psychiatrist_id=psychiatrist_id,
        therapist_id=therapist_id,
    )
    return Formed(team, (matched, formed))


def hold(referral: Referral, reason: WaitlistReason) -> ReferralWaitlisted | None:
    """Put the referral on hold, announced; None when it is on hold for that reason already."""
    if (referral.status, referral.hold_reason) == ("on-hold", reason):
        return None
    _require_transition(referral, "hold")
    return ReferralWaitlisted(
        patient_id=referral.patient_id,
        referral_id=referral.id,
        state=referral.state,
        modality=referral.modality,
        urgency=referral.urgency,
        reason_code=reason,
    )


def close_reason(action: Action) -> CareTeamEndReason:
    return "completed" if action == "complete" else "revoked"


def care_team_ended(team: CareTeam, reason: CareTeamEndReason) -> CareTeamEnded:
    return CareTeamEnded(
        patient_id=team.patient_id,
        care_team_id=team.id,
        referral_id=team.referral_id,
        therapist_id=team.therapist_id,
        psychiatrist_id=team.psychiatrist_id,
        reason_code=reason,
    )


def psychiatrist_change(
    team: CareTeam, current: str | None
) -> list[CareTeamMemberLeft | CareTeamMemberJoined]:
    """What makes the active team name the patient's current psychiatrist: the previous one
    leaves, the current one joins; nothing when the team names them already."""
    previous = team.psychiatrist_id
    if current == previous:
        return []
    changes: list[CareTeamMemberLeft | CareTeamMemberJoined] = []
    if previous is not None:
        left: MembershipReason = "psychiatrist_changed" if current else "no_psychiatric_visit"
        changes.append(
            CareTeamMemberLeft(
                patient_id=team.patient_id,
                care_team_id=team.id,
                referral_id=team.referral_id,
                clinician_id=previous,
                member_role="psychiatrist",
                reason_code=left,
            )
        )
    if current is not None:
        joined: MembershipReason = "psychiatrist_changed" if previous else "psychiatrist_learnt"
        changes.append(
            CareTeamMemberJoined(
                patient_id=team.patient_id,
                care_team_id=team.id,
                referral_id=team.referral_id,
                clinician_id=current,
                member_role="psychiatrist",
                reason_code=joined,
            )
        )
    return changes
