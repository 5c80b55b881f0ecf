"""Exceptions raised by the contracts package.

Every error a consumer can get from a message it received is a `ContractError`,
so a consumer can treat the whole family as "poison: dead-letter it".
"""

from __future__ import annotations

from pydantic import ValidationError


class ContractError(Exception):
    """Base class for contract violations."""


class UnknownEventType(ContractError):
    """No model is registered for this (type, version)."""

    def __init__(self, type: str, version: int, known_versions: tuple[int, ...] = ()) -> None:
        self.type = type
        self.version = version
        self.known_versions = known_versions
        if known_versions:
            reason = (
                f"unknown version {version} of event type {type!r} "
                f"(known versions: {', '.join(map(str, known_versions))})"
            )
        else:
            reason = f"unknown event type {type!r} (version {version})"
        self.reason = reason
        super().__init__(reason)


class InvalidPayload(ContractError):
    """The message does not validate against its contract."""

    def __init__(self, reason: str, *, type: str | None = None, version: int | None = None) -> None:
        self.reason = reason
        self.type = type
        self.version = version
        where = f"{type} v{version}: " if type is not None else ""
        super().__init__(f"{where}{reason}")


class InvalidEnvelope(InvalidPayload):
    """The bytes are not a valid envelope (bad JSON, missing or malformed fields)."""


class ProducerNotTopicOwner(ContractError):
    """The envelope names a producer that does not own the topic the record was read from:
    only a topic's owner publishes on it, so the event is not believed."""

    def __init__(self, producer: str, topic: str, owner: str | None) -> None:
        self.producer = producer
        self.topic = topic
        self.owner = owner
        if owner is None:
            reason = f"{topic} has no owner in the contracts registry"
        else:
            # `producer` is an envelope Code (a short identifier), never free text
            reason = f"producer {producer!r} is not {owner!r}, the owner of {topic}"
        self.reason = reason
        super().__init__(reason)


class SubjectMismatch(ContractError):
    """The envelope subject is not the event's patient id."""


class IncompatibleSchemaChange(ContractError):
    """A model differs from its committed JSON Schema in a breaking way."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("breaking schema changes:\n" + "\n".join(f"- {p}" for p in problems))


def validation_reason(exc: ValidationError) -> str:
    """One line naming each failing field. Input values are left out: they may be PHI."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
