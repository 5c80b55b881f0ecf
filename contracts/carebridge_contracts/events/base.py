from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from carebridge_contracts.events.common import PatientId


class BaseEvent(BaseModel):
    """Typed payload of an envelope (`Envelope.data`).

    Subclasses set `event_type` and `event_version`; a breaking change is a new
    class with the same `event_type` and the next `event_version`.
    Every event is about one patient: `patient_id` is the envelope subject and
    the Kafka key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int]

    patient_id: PatientId
