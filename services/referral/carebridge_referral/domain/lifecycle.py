"""Referral statuses (FHIR ServiceRequest) and their transitions, and the records of referral:
referrals, care teams, consents. A matched referral stays `active` with its therapist while
the care team it formed lasts (see ADR 0004).

No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from carebridge_contracts.events.common import Modality, Urgency, VisitType
from carebridge_contracts.events.intake import Gad7Band, Phq9Band
from carebridge_contracts.events.referral import (
    CareTeamEndReason,
    ConsentScope,
    RequestedBy,
    WaitlistReason,
)
from carebridge_shared.refusals import Refusal

ReferralStatus = Literal["draft", "active", "on-hold", "revoked", "completed"]
Action = Literal["match", "hold", "revoke", "complete"]
# A psychiatric visit as booking's events describe it (FHIR Appointment statuses).
VisitStatus = Literal["booked", "fulfilled", "noshow", "cancelled"]
# The visits that make a clinician one of the patient's psychiatrists (while not cancelled).
PSYCHIATRIC_VISITS: frozenset[VisitType] = frozenset(
    {"initial_psychiatric_evaluation", "psychiatric_follow_up"}
)


# (status, therapist assigned?, action) -> next status. `hold` and `match` only apply to a
# referral nobody took yet; a revoked or completed referral is never matched again.
_TRANSITIONS: Mapping[tuple[ReferralStatus, bool, Action], ReferralStatus] = {
    ("draft", False, "revoke"): "revoked",
    ("active", False, "match"): "active",
    ("active", False, "hold"): "on-hold",
    ("active", False, "revoke"): "revoked",
    ("on-hold", False, "match"): "active",
    ("on-hold", False, "hold"): "on-hold",
    ("on-hold", False, "revoke"): "revoked",
    ("active", True, "complete"): "completed",
    ("active", True, "revoke"): "revoked",
}


def next_status(current: ReferralStatus, matched: bool, action: Action) -> ReferralStatus | None:
    """The status after `action`, or None when it is not allowed from `current`."""
    return _TRANSITIONS.get((current, matched, action))


def transition_refusal(current: ReferralStatus, matched: bool, action: Action) -> Refusal | None:
    if next_status(current, matched, action) is not None:
        return None
    return Refusal(
        "illegal_transition",
        f"Cannot {action} a referral that is {current}"
        + (" and matched." if matched else " and not matched."),
        extra={"current_status": current, "action": action},
    )


def intake_urgency(phq9: Phq9Band, gad7: Gad7Band) -> Urgency:
    """Urgent when PHQ-9 is moderately severe or severe, or GAD-7 is severe."""
    if phq9 in ("moderately_severe", "severe") or gad7 == "severe":
        return "urgent"
    return "routine"


@dataclass(frozen=True, slots=True)
class Referral:
    id: UUID
    patient_id: str
    state: str
    modality: Modality
    urgency: Urgency
    requested_by: RequestedBy
    requesting_clinician_id: str | None
    assessment_id: UUID | None
    status: ReferralStatus
    hold_reason: WaitlistReason | None
    therapist_id: str | None
    care_team_id: UUID | None
    created_at: datetime
    updated_at: datetime
    matched_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def matched(self) -> bool:
        return self.therapist_id is not None

    def same_request(
        self, state: str, modality: str, urgency: str, requesting_clinician_id: str
    ) -> bool:
        """A retried POST: same place, modality, urgency and psychiatrist."""
        return (self.state, self.modality, self.urgency, self.requesting_clinician_id) == (
            state,
            modality,
            urgency,
            requesting_clinician_id,
        )


@dataclass(frozen=True, slots=True)
class CareTeam:
    id: UUID
    patient_id: str
    referral_id: UUID
    psychiatrist_id: str | None
    therapist_id: str
    status: Literal["active", "ended"]
    formed_at: datetime
    end_reason: CareTeamEndReason | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    patient_id: str
    scope: ConsentScope
    consent_id: UUID
    status: Literal["granted", "revoked"]
    granted_at: datetime
    revoked_at: datetime | None = None

    @property
    def granted(self) -> bool:
        return self.status == "granted"
