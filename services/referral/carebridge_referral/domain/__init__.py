"""Pure rules of referral: referral statuses, therapist matching and the waitlist, what a
decision does and the events it causes, plan access and diffs, the outcome trend.

No I/O here (import-linter holds it). Use cases call it as `domain.<name>`.
"""

from __future__ import annotations

from carebridge_referral.domain.care_plan import (
    PLAN_SECTIONS,
    CarePlan,
    PlanTeam,
    changed_sections,
    etag,
    parse_version_tag,
    plan_access,
)
from carebridge_referral.domain.decisions import (
    Formed,
    care_team_ended,
    close_reason,
    form_team,
    hold,
    new_referral,
    psychiatrist_change,
    therapist_requested,
)
from carebridge_referral.domain.lifecycle import (
    PSYCHIATRIC_VISITS,
    Action,
    CareTeam,
    Consent,
    Referral,
    ReferralStatus,
    VisitStatus,
    intake_urgency,
    next_status,
    transition_refusal,
)
from carebridge_referral.domain.matching import (
    Decision,
    Hold,
    Match,
    Therapist,
    WaitingReferral,
    allocate,
    choose_therapist,
    queue_key,
    queue_order,
)
from carebridge_referral.domain.outcomes import (
    MeasureKind,
    OutcomePoint,
    OutcomeTrend,
    outcome_trend,
)

__all__ = [
    "PLAN_SECTIONS",
    "PSYCHIATRIC_VISITS",
    "Action",
    "CarePlan",
    "CareTeam",
    "Consent",
    "Decision",
    "Formed",
    "Hold",
    "Match",
    "MeasureKind",
    "OutcomePoint",
    "OutcomeTrend",
    "PlanTeam",
    "Referral",
    "ReferralStatus",
    "Therapist",
    "VisitStatus",
    "WaitingReferral",
    "allocate",
    "care_team_ended",
    "changed_sections",
    "choose_therapist",
    "close_reason",
    "etag",
    "form_team",
    "hold",
    "intake_urgency",
    "new_referral",
    "next_status",
    "outcome_trend",
    "parse_version_tag",
    "plan_access",
    "psychiatrist_change",
    "queue_key",
    "queue_order",
    "therapist_requested",
    "transition_refusal",
]
