from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from carebridge_contracts.events.common import PatientId
from carebridge_contracts.topics import Topic


class BaseEvent(BaseModel):
    """Typed payload of an envelope (`Envelope.data`).

    Subclasses set `topic` (which registers them) and `event_version`; `event_type` is the class
    name unless set. A breaking change is a new class with the same `event_type` and the next
    `event_version`.
    Every event is about one patient: `patient_id` is the envelope subject and
    the Kafka key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int]
    topic: ClassVar[Topic]

    patient_id: PatientId

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" not in vars(cls):
            cls.event_type = cls.__name__
