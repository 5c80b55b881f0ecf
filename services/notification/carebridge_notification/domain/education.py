"""Patient education at each step of care: which message, once per patient and step (pure rules)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from carebridge_contracts import AppointmentBooked
from carebridge_notification import templates
from carebridge_notification.domain.planning import PRIORITY_NORMAL, PlannedDelivery

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
