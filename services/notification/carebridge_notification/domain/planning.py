"""What is sent to whom and when, for each event: the deliveries an event plans (pure rules)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
    EarlierFollowUpOffered,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
)
from carebridge_notification.domain.membership import Member, PlanChange

RecipientKind = Literal["patient", "clinician"]
DeliveryKind = Literal["confirmation", "notice", "reminder", "alert"]
DeliveryStatus = Literal["pending", "sent", "failed", "cancelled"]

# Lower runs first: the dispatcher orders its queue by (priority, due_at).
PRIORITY_URGENT = 0
PRIORITY_NORMAL = 100

BOOKED_PATIENT = "appointment_confirmation_patient"
BOOKED_CLINICIAN = "appointment_confirmation_clinician"
RESCHEDULED_PATIENT = "appointment_rescheduled_patient"
RESCHEDULED_CLINICIAN = "appointment_rescheduled_clinician"
CANCELLED_PATIENT = "appointment_cancelled_patient"
CANCELLED_CLINICIAN = "appointment_cancelled_clinician"
SAFETY_REVIEW = "safety_urgent_review"
REMINDER_PREFIX = "appointment_reminder_"
THERAPIST_MATCHED_PATIENT = "therapist_matched_patient"
THERAPIST_MATCHED_THERAPIST = "therapist_matched_therapist"
CARE_PLAN_UPDATED = "care_plan_updated"
SYMPTOMS_WORSENED = "symptoms_worsened_clinician"
EARLIER_FOLLOW_UP_OFFERED = "earlier_follow_up_offered_clinician"


def reminder_template(offset_minutes: int) -> str:
    """One template per offset, so each reminder has its own row under the unique key."""
    return f"{REMINDER_PREFIX}{offset_minutes}m"


def reminder_offset(template: str) -> int | None:
    if not template.startswith(REMINDER_PREFIX) or not template.endswith("m"):
        return None
    digits = template[len(REMINDER_PREFIX) : -1]
    return int(digits) if digits.isdigit() else None


# --- what to send ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedDelivery:
    recipient_kind: RecipientKind
    recipient_id: str
    template: str
    kind: DeliveryKind
    priority: int
    due_at: datetime
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The effect of one event: deliveries to add, and whether to cancel the appointment's
    pending ones first (a reschedule, a cancellation or the end of a visit supersedes them)."""

    deliveries: tuple[PlannedDelivery, ...] = ()
    cancel_pending: bool = False


@dataclass(frozen=True)
class Reminder:
    offset_minutes: int
    due_at: datetime


def reminder_schedule(
    starts_at: datetime, offsets_minutes: Iterable[int], now: datetime
) -> list[Reminder]:
    """A reminder `offset` minutes before `starts_at` for each offset, earliest first.

    Reminders whose time is already past are skipped (a visit booked 30 minutes ahead gets
    neither the 24 h nor the 1 h reminder).
    """
    reminders = [
        Reminder(offset, starts_at - timedelta(minutes=offset))
        for offset in sorted(set(offsets_minutes), reverse=True)
        if offset > 0
    ]
    return [r for r in reminders if r.due_at >= now]


def _visit_params(appointment_id: object, visit_type: str, starts_at: datetime) -> dict[str, str]:
    return {
        "appointment_id": str(appointment_id),
        "visit_type": visit_type,
        "starts_at": starts_at.isoformat(),
    }


def _to_both(
    patient_id: str,
    clinician_id: str,
    templates: tuple[str, str],
    kind: DeliveryKind,
    now: datetime,
    params: Mapping[str, str],
) -> list[PlannedDelivery]:
    patient_template, clinician_template = templates
    return [
        PlannedDelivery(
            "patient", patient_id, patient_template, kind, PRIORITY_NORMAL, now, params
        ),
        PlannedDelivery(
            "clinician", clinician_id, clinician_template, kind, PRIORITY_NORMAL, now, params
        ),
    ]


def _reminders(
    patient_id: str,
    params: Mapping[str, str],
    starts_at: datetime,
    offsets: Sequence[int],
    now: datetime,
) -> list[PlannedDelivery]:
    return [
        PlannedDelivery(
            "patient",
            patient_id,
            reminder_template(r.offset_minutes),
            "reminder",
            PRIORITY_NORMAL,
            r.due_at,
            {**params, "offset_minutes": str(r.offset_minutes)},
        )
        for r in reminder_schedule(starts_at, offsets, now)
    ]


def plan_booked(event: AppointmentBooked, now: datetime, offsets: Sequence[int]) -> Plan:
    params = _visit_params(event.appointment_id, event.visit_type, event.starts_at)
    confirmations = _to_both(
        event.patient_id,
        event.clinician_id,
        (BOOKED_PATIENT, BOOKED_CLINICIAN),
        "confirmation",
        now,
        params,
    )
    reminders = _reminders(event.patient_id, params, event.starts_at, offsets, now)
    return Plan(tuple(confirmations + reminders))


def plan_rescheduled(event: AppointmentRescheduled, now: datetime, offsets: Sequence[int]) -> Plan:
    params = {
        **_visit_params(event.appointment_id, event.visit_type, event.starts_at),
        "previous_starts_at": event.previous_starts_at.isoformat(),
    }
    notices = _to_both(
        event.patient_id,
        event.clinician_id,
        (RESCHEDULED_PATIENT, RESCHEDULED_CLINICIAN),
        "notice",
        now,
        params,
    )
    base = _visit_params(event.appointment_id, event.visit_type, event.starts_at)
    reminders = _reminders(event.patient_id, base, event.starts_at, offsets, now)
    return Plan(tuple(notices + reminders), cancel_pending=True)


def plan_cancelled(event: AppointmentCancelled, now: datetime) -> Plan:
    params = _visit_params(event.appointment_id, event.visit_type, event.starts_at)
    notices = _to_both(
        event.patient_id,
        event.clinician_id,
        (CANCELLED_PATIENT, CANCELLED_CLINICIAN),
        "notice",
        now,
        params,
    )
    return Plan(tuple(notices), cancel_pending=True)


def plan_visit_closed() -> Plan:
    """A completed visit or a no-show: nothing to say, and no reminder may follow."""
    return Plan(cancel_pending=True)


def plan_safety_alert(event: SafetyRiskFlagged, on_call_clinician_id: str, now: datetime) -> Plan:
    alert = PlannedDelivery(
        "clinician",
        on_call_clinician_id,
        SAFETY_REVIEW,
        "alert",
        PRIORITY_URGENT,
        now,
        {"assessment_id": str(event.assessment_id)},
    )
    return Plan((alert,))


def plan_therapist_matched(event: TherapistMatched, now: datetime) -> Plan:
    """The patient may now book a therapy intake; the therapist learns a referral reached them.

    Both messages carry the referral id (for the link) and, for the therapist, the modality code;
    never the patient's or the therapist's id (they are the recipients, not the content).
    """
    params = {"referral_id": str(event.referral_id), "modality": event.modality}
    return Plan(
        (
            PlannedDelivery(
                "patient",
                event.patient_id,
                THERAPIST_MATCHED_PATIENT,
                "notice",
                PRIORITY_NORMAL,
                now,
                params,
            ),
            PlannedDelivery(
                "clinician",
                event.therapist_id,
                THERAPIST_MATCHED_THERAPIST,
                "notice",
                PRIORITY_NORMAL,
                now,
                params,
            ),
        )
    )


def dispatch_order(priority: int, due_at: datetime) -> tuple[int, datetime]:
    """The dispatcher's queue order (mirrored by store.claim_due's ORDER BY)."""
    return (priority, due_at)


# --- care-team notices -------------------------------------------------------------------


def plan_care_plan_updated(
    change: PlanChange, recipients: Sequence[Member], due_at: datetime
) -> Plan:
    """One notice per recipient: version, changed section codes and the team (for the link)."""
    sections = ",".join(change.changed_sections)
    return Plan(
        tuple(
            PlannedDelivery(
                "clinician",
                member.clinician_id,
                CARE_PLAN_UPDATED,
                "notice",
                PRIORITY_NORMAL,
                due_at,
                {
                    "care_team_id": str(member.care_team_id),
                    "plan_version": str(change.plan_version),
                    "changed_sections": sections,
                },
            )
            for member in recipients
        )
    )


# --- measurement-based care: worsening and earlier follow-ups --------------------------------


def plan_symptoms_worsened(
    event: SymptomsWorsened, members: Sequence[Member], now: datetime
) -> Plan:
    """Each care-team member is told once (the event is the cause: a redelivery adds nothing);
    the message links to the plan, where the trend is, and carries no score."""
    return Plan(
        tuple(
            PlannedDelivery(
                "clinician",
                member.clinician_id,
                SYMPTOMS_WORSENED,
                "notice",
                PRIORITY_NORMAL,
                now,
                {
                    "care_team_id": str(member.care_team_id),
                    "assessment_id": str(event.assessment_id),
                },
            )
            for member in members
        )
    )


def plan_earlier_follow_up(event: EarlierFollowUpOffered, now: datetime) -> Plan:
    """The psychiatrist hears of the earlier slot booking found for the follow-up."""
    return Plan(
        (
            PlannedDelivery(
                "clinician",
                event.clinician_id,
                EARLIER_FOLLOW_UP_OFFERED,
                "notice",
                PRIORITY_NORMAL,
                now,
                {
                    "appointment_id": str(event.appointment_id),
                    "booked_starts_at": event.booked_starts_at.isoformat(),
                    "offered_starts_at": event.offered_starts_at.isoformat(),
                },
            ),
        )
    )
