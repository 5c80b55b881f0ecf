"""Pure rules of referral: therapist matching, the waitlist, referral statuses, plan access, diffs.

No I/O here. Referral statuses follow FHIR ServiceRequest; a matched referral stays `active`
with its therapist while the care team it formed lasts (see ADR 0004).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
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
from carebridge_contracts.events.care import PlanSection
from carebridge_contracts.events.common import ClinicianRole, Modality, Urgency, VisitType
from carebridge_contracts.events.intake import Gad7Band, Phq9Band
from carebridge_contracts.events.referral import (
    CareTeamEndReason,
    ConsentScope,
    MembershipReason,
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


# --- referral lifecycle --------------------------------------------------------------------

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


# --- records -------------------------------------------------------------------------------


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


# --- matching ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Therapist:
    id: str
    licence_states: frozenset[str]
    modalities: frozenset[str]
    capacity: int
    active: bool = True

    def qualified_for(self, state: str, modality: str) -> bool:
        return self.active and state in self.licence_states and modality in self.modalities


@dataclass(frozen=True, slots=True)
class WaitingReferral:
    """An open referral nobody took yet, as the matcher sees it."""

    id: UUID
    state: str
    modality: str
    urgency: Urgency
    created_at: datetime
    consent_granted: bool

    @classmethod
    def of(cls, referral: Referral, *, consent_granted: bool) -> WaitingReferral:
        return cls(
            referral.id,
            referral.state,
            referral.modality,
            referral.urgency,
            referral.created_at,
            consent_granted,
        )


@dataclass(frozen=True, slots=True)
class Match:
    therapist_id: str


@dataclass(frozen=True, slots=True)
class Hold:
    reason: WaitlistReason


Decision = Match | Hold


def queue_key(referral: WaitingReferral) -> tuple[int, datetime, str]:
    """Urgent first, then oldest first; the id breaks ties so the order is total."""
    return (0 if referral.urgency == "urgent" else 1, referral.created_at, str(referral.id))


def queue_order(waiting: Iterable[WaitingReferral]) -> list[WaitingReferral]:
    return sorted(waiting, key=queue_key)


def choose_therapist(
    state: str, modality: str, therapists: Iterable[Therapist], loads: Mapping[str, int]
) -> Decision:
    """The least loaded qualified therapist with a free place (ties by id), or why none.

    `no_licensed_therapist`: no active therapist licensed in `state` offers `modality`;
    `no_capacity`: some do, but all are full.
    """
    qualified = [t for t in therapists if t.qualified_for(state, modality)]
    if not qualified:
        return Hold("no_licensed_therapist")
    free = [t for t in qualified if loads.get(t.id, 0) < t.capacity]
    if not free:
        return Hold("no_capacity")
    best = min(free, key=lambda t: (loads.get(t.id, 0), t.id))
    return Match(best.id)


def allocate(
    waiting: Iterable[WaitingReferral],
    therapists: Sequence[Therapist],
    loads: Mapping[str, int],
) -> list[tuple[WaitingReferral, Decision]]:
    """Decide every waiting referral in queue order; each match takes a place at once."""
    taken = dict(loads)
    decisions: list[tuple[WaitingReferral, Decision]] = []
    for referral in queue_order(waiting):
        if not referral.consent_granted:
            decisions.append((referral, Hold("awaiting_consent")))
            continue
        decision = choose_therapist(referral.state, referral.modality, therapists, taken)
        if isinstance(decision, Match):
            taken[decision.therapist_id] = taken.get(decision.therapist_id, 0) + 1
        decisions.append((referral, decision))
    return decisions


# --- what a decision does to a referral, and the events it causes ---------------------------


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


# --- care plan -----------------------------------------------------------------------------

PLAN_SECTIONS: tuple[PlanSection, ...] = (
    "goals",
    "diagnosis_codes",
    "medication_summary",
    "therapy_modality",
    "therapy_frequency",
)


def changed_sections(
    before: Mapping[str, object], after: Mapping[str, object]
) -> list[PlanSection]:
    """The plan sections whose value differs, in canonical order (a missing one is None)."""
    return [s for s in PLAN_SECTIONS if before.get(s) != after.get(s)]


@dataclass(frozen=True, slots=True)
class PlanTeam:
    """Who may see a patient's plan: the care team's psychiatrist (or, before a team exists,
    the patient's known psychiatrist), the active care team's therapist, and the consent."""

    psychiatrist_id: str | None
    therapist_id: str | None
    consent_granted: bool


def plan_access(team: PlanTeam, clinician_id: str) -> ClinicianRole | Refusal:
    """The caller's role on the plan, or a 403 refusal.

    The therapist needs the patient's care_plan_sharing consent as well; the psychiatrist,
    who treats the patient directly, does not.
    """
    if team.psychiatrist_id is not None and clinician_id == team.psychiatrist_id:
        return "psychiatrist"
    if team.therapist_id is not None and clinician_id == team.therapist_id:
        if team.consent_granted:
            return "therapist"
        return Refusal(
            "consent_required",
            "The patient has not granted care_plan_sharing consent; the plan is not shared "
            "with the therapist.",
            status=403,
        )
    return Refusal(
        "not_in_care_team", "Only the patient's care team may see the care plan.", status=403
    )


@dataclass(frozen=True, slots=True)
class CarePlan:
    """A stored plan version; version 0 with empty content is the plan nobody wrote yet."""

    patient_id: str
    version: int
    content: Mapping[str, Any]
    author_id: str | None = None
    author_role: ClinicianRole | None = None
    updated_at: datetime | None = None


_VERSION_TAG = re.compile(r'"?([0-9]{1,9})"?')


def parse_version_tag(raw: str) -> int | None:
    """A plan version from an If-Match value, `"3"` (or bare `3`); None when it is not one.

    Weak tags (`W/"3"`) and `*` are not versions: If-Match compares strongly (RFC 9110).
    """
    found = _VERSION_TAG.fullmatch(raw.strip())
    return int(found.group(1)) if found else None


def etag(version: int) -> str:
    return f'"{version}"'


# --- outcome trend (measurement-based care) ------------------------------------------------

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
