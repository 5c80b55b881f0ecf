"""The (type, version) -> model registry, built from the event classes themselves.

Every `BaseEvent` subclass defined in a module of `carebridge_contracts.events` that names its
`topic` is registered: adding an event is writing its class (ADR 0018). Topic names live in
`carebridge_contracts.topics`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from pydantic import ValidationError

from carebridge_contracts import events
from carebridge_contracts.envelope import Envelope
from carebridge_contracts.errors import (
    ContractError,
    InvalidPayload,
    ProducerNotTopicOwner,
    UnknownEventType,
    validation_reason,
)
from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.topics import DLQ_SUFFIX as DLQ_SUFFIX
from carebridge_contracts.topics import TOPIC_OWNERS as TOPIC_OWNERS
from carebridge_contracts.topics import OpsTopic as OpsTopic
from carebridge_contracts.topics import Topic as Topic
from carebridge_contracts.topics import dlq_topic as dlq_topic


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    event_type: str
    version: int
    model: type[BaseEvent]
    topic: Topic


def event_classes() -> list[type[BaseEvent]]:
    """Every event class the modules of the events package define, in module then source order."""
    found: list[type[BaseEvent]] = []
    for info in sorted(pkgutil.iter_modules(events.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{events.__name__}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseEvent)
                and value.__module__ == module.__name__
                and "topic" in vars(value)
            ):
                found.append(value)
    return found


def _build() -> dict[tuple[str, int], RegistryEntry]:
    registry: dict[tuple[str, int], RegistryEntry] = {}
    for model in event_classes():
        key = (model.event_type, model.event_version)
        if key in registry:
            raise ContractError(f"{key[0]} v{key[1]} is registered twice")
        registry[key] = RegistryEntry(key[0], key[1], model, model.topic)
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
