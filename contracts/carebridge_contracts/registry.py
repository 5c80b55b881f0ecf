"""Topic names and the (type, version) -> model registry.

This is the only place topic names are spelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from carebridge_contracts.envelope import Envelope
from carebridge_contracts.errors import (
    ContractError,
    InvalidPayload,
    ProducerNotTopicOwner,
    UnknownEventType,
    validation_reason,
)
from carebridge_contracts.events import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    AssessmentCompleted,
    BaseEvent,
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ConsentRevoked,
    EarlierFollowUpOffered,
    NotificationFailed,
    NotificationSent,
    OutcomeMeasured,
    ReferralWaitlisted,
    SafetyRiskFlagged,
    SymptomsWorsened,
    TherapistMatched,
    TherapistRequested,
)


class Topic(StrEnum):
    ASSESSMENTS = "carebridge.intake.assessments"
    APPOINTMENTS = "carebridge.booking.appointments"
    REFERRALS = "carebridge.referral.referrals"
    CARE_PLANS = "carebridge.care.plans"
    CONSENTS = "carebridge.referral.consents"
    DELIVERIES = "carebridge.notification.deliveries"


# The one service that publishes on each topic: its outbox writes the topic's events, its Kafka
# principal alone may write there (ACLs), and consumers refuse an envelope naming another
# producer. Each service's `PUBLISHES` must be exactly the events of its topics (a test checks).
TOPIC_OWNERS: Mapping[Topic, str] = {
    Topic.ASSESSMENTS: "intake",
    Topic.APPOINTMENTS: "booking",
    Topic.REFERRALS: "referral",
    Topic.CARE_PLANS: "referral",
    Topic.CONSENTS: "referral",
    Topic.DELIVERIES: "notification",
}


class OpsTopic(StrEnum):
    """Topics of the ops tooling: JSON records, not event envelopes; no dead-letter topics."""

    DLQ_REDRIVE_AUDIT = "carebridge.ops.dlq-redrive-audit"  # one record per redriven letter


DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}{DLQ_SUFFIX}"


_EVENTS_BY_TOPIC: Mapping[Topic, tuple[type[BaseEvent], ...]] = {
    Topic.ASSESSMENTS: (AssessmentCompleted, SafetyRiskFlagged, OutcomeMeasured, SymptomsWorsened),
    Topic.APPOINTMENTS: (
        AppointmentBooked,
        AppointmentRescheduled,
        AppointmentCancelled,
        AppointmentCompleted,
        AppointmentNoShow,
        EarlierFollowUpOffered,
    ),
    Topic.REFERRALS: (
        TherapistRequested,
        TherapistMatched,
        ReferralWaitlisted,
        CareTeamFormed,
        CareTeamMemberJoined,
        CareTeamMemberLeft,
        CareTeamEnded,
    ),
    Topic.CARE_PLANS: (CarePlanUpdated,),
    Topic.CONSENTS: (ConsentGranted, ConsentRevoked),
    Topic.DELIVERIES: (NotificationSent, NotificationFailed),
}


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    event_type: str
    version: int
    model: type[BaseEvent]
    topic: Topic


def _build() -> dict[tuple[str, int], RegistryEntry]:
    registry: dict[tuple[str, int], RegistryEntry] = {}
    for topic, models in _EVENTS_BY_TOPIC.items():
        for model in models:
            key = (model.event_type, model.event_version)
            if key in registry:
                raise ContractError(f"{key[0]} v{key[1]} is registered twice")
            registry[key] = RegistryEntry(key[0], key[1], model, topic)
    return registry


_REGISTRY = _build()
_BY_MODEL = {entry.model: entry for entry in _REGISTRY.values()}


def entries() -> tuple[RegistryEntry, ...]:
    """Every registered (type, version), sorted by type then version."""
    return tuple(_REGISTRY[key] for key in sorted(_REGISTRY))


def topic_for(event: type[BaseEvent] | BaseEvent) -> Topic:
    """The topic an event class (or instance) is published on."""
    model = event if isinstance(event, type) else type(event)
    try:
        return _BY_MODEL[model].topic
    except KeyError:
        raise UnknownEventType(model.event_type, model.event_version) from None


def model_for(type: str, version: int) -> type[BaseEvent]:
    """The model registered for (type, version); raises `UnknownEventType`."""
    try:
        return _REGISTRY[(type, version)].model
    except KeyError:
        known = tuple(sorted(v for t, v in _REGISTRY if t == type))
        raise UnknownEventType(type, version, known) from None


def topic_owner(topic: str) -> str | None:
    """The service that owns (alone publishes on) `topic`; None for a topic not registered."""
    try:
        return TOPIC_OWNERS[Topic(topic)]
    except ValueError:
        return None


def topics_owned_by(service: str) -> list[Topic]:
    return [topic for topic, owner in TOPIC_OWNERS.items() if owner == service]


def check_producer(envelope: Envelope, topic: str) -> None:
    """Raise `ProducerNotTopicOwner` unless the envelope's producer owns `topic`. A redriven or
    replayed record keeps its original producer, so it passes."""
    owner = topic_owner(topic)
    if owner is None or envelope.producer != owner:
        raise ProducerNotTopicOwner(envelope.producer, topic, owner)


def all_topics() -> list[Topic]:
    return list(Topic)


def all_topics_with_dlq() -> list[str]:
    return [name for topic in Topic for name in (topic.value, dlq_topic(topic))]


def parse(message: Envelope | bytes | bytearray | memoryview | str) -> tuple[Envelope, BaseEvent]:
    """Validate an envelope and its payload.

    Raises `InvalidEnvelope`, `UnknownEventType` or `InvalidPayload`, all `ContractError`s.
    """
    envelope = message if isinstance(message, Envelope) else Envelope.from_bytes(message)
    model = model_for(envelope.type, envelope.version)
    try:
        event = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise InvalidPayload(
            validation_reason(exc), type=envelope.type, version=envelope.version
        ) from exc
    if event.patient_id != envelope.subject:
        raise InvalidPayload(
            "envelope subject is not data.patient_id", type=envelope.type, version=envelope.version
        )
    return envelope, event
