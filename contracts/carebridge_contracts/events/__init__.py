"""Event payload models, one module per producing context."""

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.booking import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from carebridge_contracts.events.care import CarePlanUpdated
from carebridge_contracts.events.intake import AssessmentCompleted, SafetyRiskFlagged
from carebridge_contracts.events.notification import NotificationFailed, NotificationSent
from carebridge_contracts.events.outcomes import (
    EarlierFollowUpOffered,
    OutcomeMeasured,
    SymptomsWorsened,
)
from carebridge_contracts.events.referral import (
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ConsentRevoked,
    ReferralWaitlisted,
    TherapistMatched,
    TherapistRequested,
)

__all__ = [
    "AppointmentBooked",
    "AppointmentCancelled",
    "AppointmentCompleted",
    "AppointmentNoShow",
    "AppointmentRescheduled",
    "AssessmentCompleted",
    "BaseEvent",
    "CarePlanUpdated",
    "CareTeamEnded",
    "CareTeamFormed",
    "CareTeamMemberJoined",
    "CareTeamMemberLeft",
    "ConsentGranted",
    "ConsentRevoked",
    "EarlierFollowUpOffered",
    "NotificationFailed",
    "NotificationSent",
    "OutcomeMeasured",
    "ReferralWaitlisted",
    "SafetyRiskFlagged",
    "SymptomsWorsened",
    "TherapistMatched",
    "TherapistRequested",
]
