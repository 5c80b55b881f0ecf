"""Pure rules of the notification service: who is told what and when, on which channel."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentRescheduled,
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    EarlierFollowUpOffered,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
)
from carebridge_contracts.events.common import Channel, ClinicianRole
from carebridge_notification import templates
from carebridge_notification.templates import Rendered as Rendered

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

# Error codes of failed deliveries (codes, never prose).
NO_CONTACT = "no_contact"
CHANNEL_UNSUPPORTED = "channel_unsupported"
TEMPLATE_ERROR = "template_error"


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
    """The dispatcher's queue order (mirrored by store.claim_next's ORDER BY)."""
    return (priority, due_at)


# --- care teams and the shared plan --------------------------------------------------------


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


# --- patient education at each step -------------------------------------------------------

EducationStep = Literal["assessment", "referral", "match", "first_follow_up"]

# template name -> step; each patient gets each step's message once (notification records the
# template version they received).
EDUCATION_STEPS: Mapping[str, EducationStep] = {
    "education_after_assessment": "assessment",
    "education_after_referral": "referral",
    "education_after_match": "match",
    "education_first_follow_up": "first_follow_up",
}
EDUCATION_TEMPLATES: Mapping[EducationStep, str] = {
    step: name for name, step in EDUCATION_STEPS.items()
}
_LEARN_PAGES: Mapping[EducationStep, str] = {
    "assessment": "psychiatry-and-your-scores",
    "referral": "therapy",
    "match": "your-care-team",
    "first_follow_up": "follow-ups-and-your-scores",
}

MODALITY_EXPLAINED: Mapping[str, str] = {
    "CBT": "CBT looks at how thoughts, feelings and actions affect each other, and practises "
    "small, practical changes between sessions.",
    "DBT": "DBT teaches skills for handling strong emotions, distress and relationships, often "
    "with a skills group as well as individual sessions.",
    "EMDR": "EMDR helps the mind process distressing memories, using guided eye movements or "
    "taps while you recall them.",
    "IPT": "IPT focuses on relationships and life changes, and how they affect your mood.",
    "ACT": "ACT helps you make room for difficult thoughts and feelings while you do what "
    "matters to you.",
    "psychodynamic": "Psychodynamic therapy explores patterns from your past and how they "
    "shape feelings and relationships today.",
}


def education_delivery(
    step: EducationStep, patient_id: str, params: Mapping[str, str], now: datetime
) -> PlannedDelivery:
    """The step's message to the patient, at the template's latest version (recorded in the
    params, so a resend or a later render uses the same wording)."""
    template = EDUCATION_TEMPLATES[step]
    version = templates.latest_version(template)
    return PlannedDelivery(
        "patient",
        patient_id,
        template,
        "notice",
        PRIORITY_NORMAL,
        now,
        {**params, "template_version": str(version)},
    )


def education_for_booking(event: AppointmentBooked) -> EducationStep | None:
    """A booked psychiatric follow-up is the first-follow-up step (sent once per patient)."""
    return "first_follow_up" if event.visit_type == "psychiatric_follow_up" else None


def education_values(step: EducationStep, params: Mapping[str, str], base: str) -> dict[str, str]:
    values = {"link": f"{base}/learn/{_LEARN_PAGES[step]}"}
    if step == "assessment":
        values["phq9_band"] = params["phq9_band"].replace("_", " ")
        values["gad7_band"] = params["gad7_band"].replace("_", " ")
    if step in ("referral", "match"):
        values["modality"] = _plain(params["modality"], MODALITY_WORDS)
        values["modality_explained"] = MODALITY_EXPLAINED.get(params["modality"], "")
    return values


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


# --- on which channel ----------------------------------------------------------------------


@dataclass(frozen=True)
class ContactInfo:
    email: str | None
    phone: str | None
    preferred_channel: Channel


def planned_channel(contact: ContactInfo | None) -> Channel:
    """The channel a new delivery is recorded under.

    Only e-mail is delivered for real: an SMS-preferring recipient with an e-mail address is
    written to by e-mail; without one the delivery stays "sms" and fails as unsupported.
    """
    if contact is not None and contact.preferred_channel == "sms" and contact.email is None:
        return "sms"
    return "email"


@dataclass(frozen=True)
class EmailRoute:
    address: str


@dataclass(frozen=True)
class Undeliverable:
    error_code: str


def route(contact: ContactInfo | None) -> EmailRoute | Undeliverable:
    """How a due delivery goes out, decided with the contact as it is at send time."""
    if contact is None or (contact.email is None and contact.phone is None):
        return Undeliverable(NO_CONTACT)
    if contact.email is None:
        return Undeliverable(CHANNEL_UNSUPPORTED)
    return EmailRoute(contact.email)


# --- retries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff: timedelta
    max_backoff: timedelta

    def backoff(self, attempts: int) -> timedelta:
        """Delay after the `attempts`-th failed attempt: initial, 2x, 4x... capped."""
        delay: timedelta = self.initial_backoff * 2 ** max(attempts - 1, 0)
        return min(delay, self.max_backoff)


@dataclass(frozen=True)
class RetryAt:
    next_attempt_at: datetime


@dataclass(frozen=True)
class GiveUp:
    pass


def is_permanent(error_code: str) -> bool:
    """SMTP 5xx replies are permanent (RFC 5321): retrying cannot help."""
    return error_code.startswith("smtp_5")


def after_failure(
    attempts: int, error_code: str, policy: RetryPolicy, now: datetime
) -> RetryAt | GiveUp:
    """What follows the `attempts`-th failed attempt (counting it)."""
    if is_permanent(error_code) or attempts >= policy.max_attempts:
        return GiveUp()
    return RetryAt(now + policy.backoff(attempts))


# --- what the message says ---------------------------------------------------------------
# The wording is in versioned template files (templates/, see templates.py); this part turns a
# delivery's stored params (ids, times, codes) into the words those templates are filled with.

VISIT_WORDS: Mapping[str, str] = {
    "initial_psychiatric_evaluation": "first psychiatry appointment",
    "psychiatric_follow_up": "psychiatry follow-up appointment",
    "therapy_intake": "first therapy appointment",
    "therapy_session": "therapy appointment",
}

CRISIS_FOOTER = (
    "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline). In an emergency, call 911."
)
SIGNATURE = "This is an automated message from carebridge. Please do not reply."


def format_time(value: datetime) -> str:
    return f"{value:%A} {value.day} {value:%B %Y} at {value:%H:%M} UTC"


def _in_words(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


MODALITY_WORDS: Mapping[str, str] = {
    "CBT": "cognitive behavioral therapy (CBT)",
    "DBT": "dialectical behavior therapy (DBT)",
    "EMDR": "EMDR therapy",
    "IPT": "interpersonal therapy (IPT)",
    "ACT": "acceptance and commitment therapy (ACT)",
    "psychodynamic": "psychodynamic therapy",
}

SECTION_WORDS: Mapping[str, str] = {
    "goals": "treatment goals",
    "diagnosis_codes": "diagnoses",
    "medication_summary": "medication summary",
    "therapy_modality": "therapy approach",
    "therapy_frequency": "therapy frequency",
}


def _plain(code: str, words: Mapping[str, str]) -> str:
    return words.get(code, code.replace("_", " "))


def in_plain_words(codes: Iterable[str], words: Mapping[str, str]) -> str:
    """Codes in words, as a list reads: "a", "a and b", "a, b and c"."""
    plain = [_plain(code, words) for code in codes if code]
    if not plain:
        raise ValueError("no codes to put in words")
    if len(plain) == 1:
        return plain[0]
    return f"{', '.join(plain[:-1])} and {plain[-1]}"


_APPOINTMENT_TEMPLATES = frozenset(
    {
        BOOKED_PATIENT,
        BOOKED_CLINICIAN,
        RESCHEDULED_PATIENT,
        RESCHEDULED_CLINICIAN,
        CANCELLED_PATIENT,
        CANCELLED_CLINICIAN,
    }
)
REMINDER_FILE = "appointment_reminder"
FOLLOW_UP_REMINDER_FILE = "appointment_reminder_follow_up"
# Where a patient takes their repeat measures; the reminder adds ?appointment_id=...
DEFAULT_OUTCOME_MEASURE_URL = "http://127.0.0.1:8001/v1/outcome-measures"

Values = dict[str, str]


def _visit_values(params: Mapping[str, str], base: str) -> Values:
    previous = params.get("previous_starts_at")
    return {
        "link": f"{base}/appointments/{params['appointment_id']}",
        "visit": VISIT_WORDS.get(params["visit_type"], "appointment"),
        "when": format_time(datetime.fromisoformat(params["starts_at"])),
        "previous": format_time(datetime.fromisoformat(previous)) if previous else "",
    }


def _plan_values(params: Mapping[str, str], base: str) -> Values:
    version = params["plan_version"]
    if not version.isdigit():
        raise ValueError("plan_version must be a number")
    return {
        "plan_version": version,
        "sections": in_plain_words(params["changed_sections"].split(","), SECTION_WORDS),
        "link": f"{base}/care-teams/{params['care_team_id']}/plan",
    }


def _earlier_values(params: Mapping[str, str], base: str) -> Values:
    return {
        "visit": VISIT_WORDS["psychiatric_follow_up"],
        "booked": format_time(datetime.fromisoformat(params["booked_starts_at"])),
        "offered": format_time(datetime.fromisoformat(params["offered_starts_at"])),
        "link": f"{base}/appointments/{params['appointment_id']}",
    }


_VALUES: Mapping[str, Callable[[Mapping[str, str], str], Values]] = {
    THERAPIST_MATCHED_PATIENT: lambda p, base: {"link": f"{base}/referrals/{p['referral_id']}"},
    THERAPIST_MATCHED_THERAPIST: lambda p, base: {
        "link": f"{base}/referrals/{p['referral_id']}",
        "modality": _plain(p["modality"], MODALITY_WORDS),
    },
    CARE_PLAN_UPDATED: _plan_values,
    SAFETY_REVIEW: lambda p, base: {"link": f"{base}/reviews/{p['assessment_id']}"},
    SYMPTOMS_WORSENED: lambda p, base: {"link": f"{base}/care-teams/{p['care_team_id']}/plan"},
    EARLIER_FOLLOW_UP_OFFERED: _earlier_values,
}


def render(
    template: str,
    params: Mapping[str, str],
    link_base_url: str,
    *,
    outcome_measure_url: str = DEFAULT_OUTCOME_MEASURE_URL,
) -> Rendered:
    """Subject and plain-text body from the template's file (its latest version, or the one an
    education delivery recorded). No names are known here: people are addressed generically,
    and messages carry no clinical detail beyond the time and the kind of visit (appointments),
    the therapy modality (to the matched therapist and the patient), the changed plan sections'
    names and the plan version (to care-team members), and the patient's own bands (to the
    patient). A reminder of a psychiatric follow-up links to the repeat measures, not scores."""
    base = link_base_url.rstrip("/")
    version = int(params["template_version"]) if "template_version" in params else None
    step = EDUCATION_STEPS.get(template)
    if step is not None:
        values = education_values(step, params, base)
        return templates.template(template, version).render(values)
    offset = reminder_offset(template)
    if offset is not None:
        values = {**_visit_values(params, base), "in_words": _in_words(offset)}
        if params["visit_type"] != "psychiatric_follow_up":
            return templates.template(REMINDER_FILE, version).render(values)
        # an appointment id is a UUID: nothing in it needs escaping in a query string
        appointment_id = uuid.UUID(str(params["appointment_id"]))
        values["measure_link"] = f"{outcome_measure_url}?appointment_id={appointment_id}"
        return templates.template(FOLLOW_UP_REMINDER_FILE, version).render(values)
    if template in _APPOINTMENT_TEMPLATES:
        return templates.template(template, version).render(_visit_values(params, base))
    make_values = _VALUES.get(template)
    if make_values is None:
        raise ValueError(f"unknown template {template!r}")
    return templates.template(template, version).render(make_values(params, base))
