"""What the message says: a delivery's stored params (ids, times, codes) turned into the words
its versioned template file (templates/, see templates.py) is filled with."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from carebridge_notification import templates
from carebridge_notification.domain.education import EDUCATION_STEPS, EducationStep
from carebridge_notification.domain.planning import (
    BOOKED_CLINICIAN,
    BOOKED_PATIENT,
    CANCELLED_CLINICIAN,
    CANCELLED_PATIENT,
    CARE_PLAN_UPDATED,
    EARLIER_FOLLOW_UP_OFFERED,
    RESCHEDULED_CLINICIAN,
    RESCHEDULED_PATIENT,
    SAFETY_REVIEW,
    SYMPTOMS_WORSENED,
    THERAPIST_MATCHED_PATIENT,
    THERAPIST_MATCHED_THERAPIST,
    reminder_offset,
)
from carebridge_notification.templates import Rendered

# Error code of a delivery whose message cannot be rendered (a code, never prose).
TEMPLATE_ERROR = "template_error"

VISIT_WORDS: Mapping[str, str] = {
    "initial_psychiatric_evaluation": "first psychiatry appointment",
    "psychiatric_follow_up": "psychiatry follow-up appointment",
    "therapy_intake": "first therapy appointment",
    "therapy_session": "therapy appointment",
}


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


def education_values(step: EducationStep, params: Mapping[str, str], base: str) -> dict[str, str]:
    values = {"link": f"{base}/learn/{_LEARN_PAGES[step]}"}
    if step == "assessment":
        values["phq9_band"] = params["phq9_band"].replace("_", " ")
        values["gad7_band"] = params["gad7_band"].replace("_", " ")
    if step in ("referral", "match"):
        values["modality"] = _plain(params["modality"], MODALITY_WORDS)
        values["modality_explained"] = MODALITY_EXPLAINED.get(params["modality"], "")
    return values


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
