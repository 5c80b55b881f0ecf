"""Referral events (topics: referrals, consents). Statuses follow FHIR ServiceRequest."""

from __future__ import annotations

from typing import ClassVar, Literal, Self
from uuid import UUID

from pydantic import model_validator

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import (
    ClinicianId,
    ClinicianRole,
    Modality,
    StateCode,
    Urgency,
)
from carebridge_contracts.topics import Topic

__all__ = [
    "CareTeamEnded",
    "CareTeamFormed",
    "CareTeamMemberJoined",
    "CareTeamMemberLeft",
    "ConsentGranted",
    "ConsentRevoked",
    "ReferralWaitlisted",
    "TherapistMatched",
    "TherapistRequested",
]  # the events; the registry finds them by `topic`

RequestedBy = Literal["psychiatrist", "intake"]
WaitlistReason = Literal["no_capacity", "no_licensed_therapist", "awaiting_consent"]
ConsentScope = Literal["care_plan_sharing"]
CareTeamEndReason = Literal["completed", "revoked"]
# Why a member joined or left an active team: the patient's current psychiatrist changed (a
# psychiatric visit with someone else is now the most recent), or they have none any more (their
# psychiatric visits were all cancelled), or referral learnt one after the team formed.
MembershipReason = Literal["psychiatrist_changed", "psychiatrist_learnt", "no_psychiatric_visit"]


class TherapistRequested(BaseEvent):
    """A therapist referral was opened (FHIR ServiceRequest "active")."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    referral_id: UUID
    state: StateCode
    modality: Modality
    urgency: Urgency
    requested_by: RequestedBy
    requesting_clinician_id: ClinicianId | None = None

    @model_validator(mode="after")
    def _psychiatrist_is_named(self) -> Self:
        if self.requested_by == "psychiatrist" and self.requesting_clinician_id is None:
            raise ValueError("requesting_clinician_id is required when requested_by='psychiatrist'")
        return self


class TherapistMatched(BaseEvent):
    """A therapist licensed in `state` accepted the referral."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    referral_id: UUID
    therapist_id: ClinicianId
    psychiatrist_id: ClinicianId | None = None
    modality: Modality
    state: StateCode


class ReferralWaitlisted(BaseEvent):
    """The referral is on hold (FHIR ServiceRequest "on-hold")."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    referral_id: UUID
    state: StateCode
    modality: Modality
    urgency: Urgency
    reason_code: WaitlistReason


class CareTeamFormed(BaseEvent):
    """Psychiatrist and therapist now share the patient's treatment plan."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    care_team_id: UUID
    psychiatrist_id: ClinicianId | None = None
    therapist_id: ClinicianId


class CareTeamEnded(BaseEvent):
    """The patient left the care team: the therapist's place is free, plan sharing with them ends.

    `completed`: the referral was fulfilled; `revoked`: it was withdrawn before that.
    """

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    care_team_id: UUID
    referral_id: UUID
    therapist_id: ClinicianId
    psychiatrist_id: ClinicianId | None = None
    reason_code: CareTeamEndReason


class CareTeamMemberJoined(BaseEvent):
    """A clinician joined the patient's active care team (e.g. a psychiatrist learnt after the
    match): they now share the plan, and every service counts them as treating the patient."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    care_team_id: UUID
    referral_id: UUID
    clinician_id: ClinicianId
    member_role: ClinicianRole
    reason_code: MembershipReason


class CareTeamMemberLeft(BaseEvent):
    """A clinician left the patient's active care team, which goes on without them: no more
    plan sharing, and no service counts the team as a reason they treat the patient."""

    topic: ClassVar[Topic] = Topic.REFERRALS
    event_version: ClassVar[int] = 1

    care_team_id: UUID
    referral_id: UUID
    clinician_id: ClinicianId
    member_role: ClinicianRole
    reason_code: MembershipReason


class ConsentGranted(BaseEvent):
    """The patient consented to sharing within `scope`."""

    topic: ClassVar[Topic] = Topic.CONSENTS
    event_version: ClassVar[int] = 1

    consent_id: UUID
    scope: ConsentScope
    grantee_id: ClinicianId | None = None


class ConsentRevoked(BaseEvent):
    """The patient withdrew a consent; sharing within `scope` must stop."""

    topic: ClassVar[Topic] = Topic.CONSENTS
    event_version: ClassVar[int] = 1

    consent_id: UUID
    scope: ConsentScope
    grantee_id: ClinicianId | None = None
