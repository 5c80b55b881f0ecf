"""The shared care plan: who may open it, which sections changed, its version tags.

No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carebridge_contracts.events.care import PlanSection
from carebridge_contracts.events.common import ClinicianRole
from carebridge_shared.refusals import Refusal

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
