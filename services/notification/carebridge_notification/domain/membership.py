"""Care-team membership as referral's events change it, and the patient's consent to the
team's therapist hearing of plan changes (pure rules)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from carebridge_contracts import (
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
)
from carebridge_contracts.events.common import ClinicianRole


@dataclass(frozen=True)
class Member:
    """A clinician on a patient's care team, as referral's CareTeamFormed named them;
    `joined_at` is when that event happened (its occurred_at)."""

    clinician_id: str
    role: ClinicianRole
    care_team_id: uuid.UUID
    joined_at: datetime


@dataclass(frozen=True)
class TeamChange:
    """What a care-team event does to the patient's membership: who joins (or is confirmed),
    who leaves."""

    joins: tuple[Member, ...] = ()
    leaves: tuple[Member, ...] = ()


def team_formed(current: Sequence[Member], event: CareTeamFormed, at: datetime) -> TeamChange:
    """A formed team names the patient's therapist, and maybe the psychiatrist.

    Referral keeps one active team, and so one shared plan, per patient: the named therapist
    replaces any other therapist; a named psychiatrist replaces any other psychiatrist. Without
    a psychiatrist in the event, the one already known stays (referral, too, lets the patient's
    known psychiatrist keep the plan when the team names none).
    """
    joins = [Member(event.therapist_id, "therapist", event.care_team_id, at)]
    if event.psychiatrist_id is not None and event.psychiatrist_id != event.therapist_id:
        joins.append(Member(event.psychiatrist_id, "psychiatrist", event.care_team_id, at))
    replaced = {j.role for j in joins}
    joining = {j.clinician_id for j in joins}
    leaves = [m for m in current if m.role in replaced and m.clinician_id not in joining]
    return TeamChange(tuple(joins), tuple(leaves))


def team_ended(current: Sequence[Member], event: CareTeamEnded) -> TeamChange:
    """The team's therapist leaves; the psychiatrist stays.

    `CareTeamEnded` ends the therapy referral (completed or revoked), not the patient's
    psychiatric care: referral keeps the plan open to the patient's psychiatrist afterwards, so
    the psychiatrist remains a member (and would be told of a change by a later therapist).
    Nothing in the event says the psychiatrist leaves; `psychiatrist_id` only describes the team.
    The therapist is removed only while the membership still belongs to this team.
    """
    leaves = [
        m
        for m in current
        if m.clinician_id == event.therapist_id
        and m.role == "therapist"
        and m.care_team_id == event.care_team_id
    ]
    return TeamChange(leaves=tuple(leaves))


def member_joined(
    current: Sequence[Member], event: CareTeamMemberJoined, at: datetime
) -> TeamChange:
    """A clinician joined the active team (a psychiatrist learnt or changed after the match):
    they replace whoever held their role, as a formed team's members do."""
    joins = (Member(event.clinician_id, event.member_role, event.care_team_id, at),)
    leaves = tuple(
        m for m in current if m.role == event.member_role and m.clinician_id != event.clinician_id
    )
    return TeamChange(joins, leaves)


def member_left(current: Sequence[Member], event: CareTeamMemberLeft) -> TeamChange:
    """A clinician left the active team; the others stay."""
    leaves = tuple(
        m for m in current if m.clinician_id == event.clinician_id and m.role == event.member_role
    )
    return TeamChange(leaves=leaves)


@dataclass(frozen=True)
class PlanChange:
    """A CarePlanUpdated as this service keeps it: ids, version and section codes only."""

    event_id: uuid.UUID
    correlation_id: uuid.UUID
    plan_version: int
    changed_sections: tuple[str, ...]
    author_id: str
    author_role: ClinicianRole
    occurred_at: datetime

    @classmethod
    def of(
        cls,
        event: CarePlanUpdated,
        event_id: uuid.UUID,
        correlation_id: uuid.UUID,
        occurred_at: datetime,
    ) -> PlanChange:
        return cls(
            event_id=event_id,
            correlation_id=correlation_id,
            plan_version=event.plan_version,
            changed_sections=tuple(event.changed_sections),
            author_id=event.author_id,
            author_role=event.author_role,
            occurred_at=occurred_at,
        )


@dataclass(frozen=True)
class PlanRecipients:
    members: tuple[Member, ...]
    author_is_member: bool


def plan_change_recipients(
    team: Sequence[Member], author_id: str, occurred_at: datetime
) -> PlanRecipients:
    """Every member but the author, among those who had joined when the change happened.

    An author who is not a known member (the team's psychiatrist became known to referral
    without an event, a team event not applied yet...) removes nobody: all members are told,
    and the caller logs it.
    """
    members = tuple(m for m in team if m.joined_at <= occurred_at and m.clinician_id != author_id)
    author_is_member = any(m.clinician_id == author_id for m in team)
    return PlanRecipients(members, author_is_member)


# --- consent to share the plan ---------------------------------------------------------------

CARE_PLAN_SHARING = "care_plan_sharing"


@dataclass(frozen=True)
class Consent:
    """The latest ConsentGranted / ConsentRevoked of one patient and scope: whether sharing is
    granted, and when that event happened."""

    granted: bool
    updated_at: datetime


def may_hear_of_plan_changes(role: ClinicianRole, sharing: Consent | None) -> bool:
    """Whether a member may be told of a plan change, given the patient's care_plan_sharing
    consent.

    The therapist sees the shared plan only under the patient's consent (referral stops them
    from opening it while it is revoked), so a therapist hears of no change while it is
    revoked. The psychiatrist's access does not depend on it. With no consent event seen yet,
    nothing changes (referral forms a care team only after consent is granted).
    """
    if role != "therapist" or sharing is None:
        return True
    return sharing.granted


def consented(members: Sequence[Member], sharing: Consent | None) -> tuple[Member, ...]:
    """The members who may be told of a plan change (see `may_hear_of_plan_changes`)."""
    return tuple(m for m in members if may_hear_of_plan_changes(m.role, sharing))
