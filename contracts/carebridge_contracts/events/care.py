"""Shared treatment plan events (topic: care plans). The plan content never leaves referral."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, model_validator

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import ClinicianId, ClinicianRole, PositiveInt
from carebridge_contracts.topics import Topic

__all__ = ["CarePlanUpdated"]  # the events; the registry finds them by `topic`

PlanSection = Literal[
    "goals", "diagnosis_codes", "medication_summary", "therapy_modality", "therapy_frequency"
]


class CarePlanUpdated(BaseEvent):
    """The shared treatment plan changed; read it from referral, it is not in the event."""

    topic: ClassVar[Topic] = Topic.CARE_PLANS
    event_version: ClassVar[int] = 1

    plan_version: PositiveInt
    changed_sections: Annotated[list[PlanSection], Field(min_length=1)]
    author_id: ClinicianId
    author_role: ClinicianRole

    @model_validator(mode="after")
    def _sections_unique(self) -> Self:
        if len(set(self.changed_sections)) != len(self.changed_sections):
            raise ValueError("changed_sections must not repeat")
        return self
