"""Each service's AsyncAPI document from FastStream, merged into one event catalog.

Per service, a KafkaBroker that is never started gets one subscriber per consumed topic (one
handler per event type, typed with that event's envelope) and one publisher per published topic
(one declared call per event type). FastStream's AsyncAPI 3.0 generator turns each broker into a
document; `catalog_document` reads who sends and receives which message back out of those
documents and merges them: one channel per topic, one message per event type and version.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any, Literal, cast
from urllib.parse import unquote

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.specification import AsyncAPI
from pydantic import create_model

from carebridge_contracts import Envelope, dlq_topic
from carebridge_contracts.envelope import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
)
from carebridge_contracts.registry import RegistryEntry, Topic, entries
from carebridge_ops.catalog.sources import CatalogError, ServiceEvents
from carebridge_shared.kafka import bootstrap_list
from carebridge_shared.settings import ServiceSettings

Document = dict[str, Any]
Action = Literal["send", "receive"]

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
# The field default, not the environment: the document must not depend on who generates it.
BOOTSTRAP = str(ServiceSettings.model_fields["kafka_bootstrap_servers"].default)
ENVELOPE_SCHEMA = "Envelope"


def message_key(entry: RegistryEntry) -> str:
    """`AppointmentBooked.v1`: the catalog's name for one event type and version."""
    return f"{entry.event_type}.v{entry.version}"


@functools.cache
def envelope_model(entry: RegistryEntry) -> type[Envelope]:
    """The envelope of one event type and version: `type` and `version` fixed, `data` typed."""
    fields: dict[str, Any] = {
        "type": (Literal[entry.event_type], ...),
        "version": (Literal[entry.version], ...),
        "data": (entry.model, ...),
    }
    model: type[Envelope] = create_model(
        f"{entry.event_type}V{entry.version}Envelope",
        __base__=Envelope,
        __doc__=f"A {entry.event_type} v{entry.version} event on the wire; `data` is the event.",
        **fields,
    )
    return model


def _receiver(entry: RegistryEntry) -> Callable[[Envelope], Awaitable[None]]:
    async def receive(message: Envelope) -> None:
        """Never called: the broker is never started."""

    receive.__name__ = receive.__qualname__ = f"receive_{entry.event_type}_v{entry.version}"
    receive.__annotations__ = {"message": envelope_model(entry), "return": None}
    return receive


def _sender(entry: RegistryEntry) -> Callable[[], Envelope]:
    def send() -> Envelope:
        raise CatalogError("never called: the broker is never started")

    send.__name__ = send.__qualname__ = f"send_{entry.event_type}_v{entry.version}"
    send.__annotations__ = {"return": envelope_model(entry)}
    return send


def _of_type(entry: RegistryEntry) -> Callable[[KafkaMessage], bool]:
    def matches(message: KafkaMessage) -> bool:
        return bool(message.headers.get(HEADER_TYPE) == entry.event_type)

    return matches


def _by_topic(group: Iterable[RegistryEntry]) -> list[tuple[Topic, list[RegistryEntry]]]:
    found: dict[Topic, list[RegistryEntry]] = {}
    for entry in group:
        found.setdefault(entry.topic, []).append(entry)
    return [(topic, found[topic]) for topic in Topic if topic in found]


def service_broker(events: ServiceEvents) -> KafkaBroker:
    """A broker describing one service's topics; it is never started."""
    broker = KafkaBroker(
        bootstrap_list(BOOTSTRAP),
        description="Kafka (the local dev stack's address; services read KAFKA_BOOTSTRAP_SERVERS)",
        logger=None,
    )
    for topic, group in _by_topic(events.consumes):
        subscriber = broker.subscriber(
            str(topic),
            group_id=events.service,
            title=f"{events.service}:receive:{topic}",
            description=f"{events.service} consumes with consumer group {events.service!r}",
        )
        for entry in group:
            subscriber(_receiver(entry), filter=_of_type(entry))
    for topic, group in _by_topic(events.publishes):
        publisher = broker.publisher(
            str(topic),
            title=f"{events.service}:send:{topic}",
            description=f"{events.service} publishes through its transactional outbox",
        )
        for entry in group:
            publisher(_sender(entry))
    return broker


def _asyncapi(broker: KafkaBroker, title: str, app_version: str) -> Document:
    with warnings.catch_warnings():
        # FastStream warns when it overwrites a channel or schema: that would lose an event.
        warnings.simplefilter("error", RuntimeWarning)
        specification = AsyncAPI(
            broker, title=title, version=app_version, schema_version=ASYNCAPI_VERSION
        ).to_specification()
    return cast(Document, specification.to_jsonable())


def service_asyncapi(events: ServiceEvents) -> Document:
    """FastStream's AsyncAPI document of one service."""
    return _asyncapi(
        service_broker(events),
        f"carebridge {events.service}",
        package_version(f"carebridge-{events.service}"),
    )


def registry_asyncapi() -> Document:
    """A document that sends every registered event, so even one no service uses has a schema."""
    everything = ServiceEvents(service="contracts", publishes=entries(), consumes=())
    return _asyncapi(service_broker(everything), "carebridge contracts", _contracts_version())


def _contracts_version() -> str:
    return package_version("carebridge-contracts")


@dataclass(frozen=True)
class Use:
    """One service sends or receives one event type and version on its topic."""

    service: str
    action: Action
    topic: str
    entry: RegistryEntry


def resolve(document: Document, reference: str) -> Any:
    """Follow a local JSON pointer (`#/a/b`) inside `document`."""
    if not reference.startswith("#/"):
        raise CatalogError(f"not a local reference: {reference}")
    node: Any = document
    for part in reference[2:].split("/"):
        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return node


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _payload_schemas(payload: Document) -> list[str]:
    references = payload.get("oneOf", [payload])
    names = [str(item.get("$ref", "")).rsplit("/", 1)[-1] for item in references]
    if not all(names):
        raise CatalogError(f"a payload without a schema reference: {payload}")
    return names


def uses_in(service: str, document: Document) -> list[Use]:
    """Who sends and receives what, read back from one service's AsyncAPI document."""
    by_schema = {envelope_model(entry).__name__: entry for entry in entries()}
    found: list[Use] = []
    for operation in document.get("operations", {}).values():
        channel = resolve(document, operation["channel"]["$ref"])
        for message_ref in operation["messages"]:
            message = resolve(document, message_ref["$ref"])
            if "$ref" in message:
                message = resolve(document, message["$ref"])
            for schema in _payload_schemas(message["payload"]):
                if schema not in by_schema:
                    raise CatalogError(f"{service}: {schema} is not an event envelope")
                found.append(
                    Use(service, operation["action"], channel["address"], by_schema[schema])
                )
    return found


def _check_uses(services: Sequence[ServiceEvents], uses: list[Use]) -> None:
    expected = {
        (events.service, action, entry)
        for events in services
        for action, group in (("send", events.publishes), ("receive", events.consumes))
        for entry in group
    }
    documented = {(use.service, use.action, use.entry) for use in uses}
    if documented != expected:
        raise CatalogError(f"FastStream documented {documented ^ expected} differently")
    for use in uses:
        if use.topic != use.entry.topic.value:
            raise CatalogError(f"{message_key(use.entry)} documented on {use.topic}")


def _merge(target: Document, source: Document, what: str) -> None:
    for name, value in source.items():
        if target.setdefault(name, value) != value:
            raise CatalogError(f"two different {what} named {name}")


def catalog_document(services: Sequence[ServiceEvents]) -> Document:
    """The merged AsyncAPI 3.0 document of all services: the event catalog."""
    documents = {events.service: service_asyncapi(events) for events in services}
    uses = [use for service, doc in documents.items() for use in uses_in(service, doc)]
    _check_uses(services, uses)
    order = [events.service for events in services]

    def who(entry: RegistryEntry | None, topic: str, action: Action) -> list[str]:
        names = {
            use.service
            for use in uses
            if use.action == action and use.topic == topic and entry in (None, use.entry)
        }
        return [service for service in order if service in names]

    servers: Document = {}
    schemas: Document = {}
    for document in [registry_asyncapi(), *documents.values()]:
        _merge(servers, document.get("servers", {}), "servers")
        _merge(schemas, document["components"]["schemas"], "schemas")
    schemas[ENVELOPE_SCHEMA] = Envelope.model_json_schema()
    schemas = dict(sorted(schemas.items()))  # FastStream's own order varies between runs

    channels: Document = {}
    messages: Document = {}
    for topic in Topic:
        keys = [message_key(entry) for entry in entries() if entry.topic is topic]
        channels[topic.value] = {
            "address": topic.value,
            "title": topic.value,
            "description": _channel_description(topic),
            "messages": {key: _ref("components", "messages", key) for key in keys},
            "bindings": {"kafka": {"topic": topic.value, "bindingVersion": KAFKA_BINDING_VERSION}},
            "x-dead-letter-topic": dlq_topic(topic),
            "x-producers": who(None, topic.value, "send"),
            "x-consumers": who(None, topic.value, "receive"),
        }
    for entry in entries():
        messages[message_key(entry)] = _message(
            entry,
            producers=who(entry, entry.topic.value, "send"),
            consumers=who(entry, entry.topic.value, "receive"),
        )

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "carebridge event catalog",
            "version": _contracts_version(),
            "description": CATALOG_DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": _operations(uses, order),
        "components": {"messages": messages, "schemas": schemas},
    }


def _operations(uses: list[Use], order: list[str]) -> Document:
    topics = [topic.value for topic in Topic]
    keys = sorted(
        {(use.service, use.action, use.topic) for use in uses},
        key=lambda k: (order.index(k[0]), k[1] != "send", topics.index(k[2])),
    )
    operations: Document = {}
    for service, action, topic in keys:
        sent = [
            use.entry
            for use in uses
            if (use.service, use.action, use.topic) == (service, action, topic)
        ]
        operation: Document = {
            "action": action,
            "channel": _ref("channels", topic),
            "summary": f"{service} {'publishes' if action == 'send' else 'consumes'} {topic}",
            "messages": [
                _ref("channels", topic, "messages", message_key(entry))
                for entry in entries()
                if entry in sent
            ],
            "x-service": service,
        }
        if action == "receive":
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [service]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        operations[f"{service}.{action}.{topic}"] = operation
    return operations


def _message(entry: RegistryEntry, *, producers: list[str], consumers: list[str]) -> Document:
    doc = (entry.model.__doc__ or "").strip()
    return {
        "name": entry.event_type,
        "title": f"{entry.event_type} v{entry.version}",
        "summary": doc.splitlines()[0] if doc else "",
        "contentType": "application/json",
        "headers": _headers(entry),
        "correlationId": {
            "description": "Shared by every event that follows from one request.",
            "location": f"$message.header#/{HEADER_CORRELATION_ID}",
        },
        "payload": _ref("components", "schemas", envelope_model(entry).__name__),
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The patient id (envelope subject): a patient's events stay "
                    "in order within the topic.",
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-event-type": entry.event_type,
        "x-event-version": entry.version,
        "x-topic": entry.topic.value,
        "x-producers": producers,
        "x-consumers": consumers,
    }


def _headers(entry: RegistryEntry) -> Document:
    return {
        "type": "object",
        "properties": {
            HEADER_TYPE: {
                "type": "string",
                "const": entry.event_type,
                "description": "The envelope's type: route without parsing the value.",
            },
            HEADER_VERSION: {
                "type": "string",
                "const": str(entry.version),
                "description": "The envelope's version, as decimal text.",
            },
            HEADER_EVENT_ID: {
                "type": "string",
                "format": "uuid",
                "description": "The envelope's event_id.",
            },
            HEADER_CORRELATION_ID: {
                "type": "string",
                "format": "uuid",
                "description": "The envelope's correlation_id.",
            },
        },
        "required": [HEADER_TYPE, HEADER_VERSION, HEADER_EVENT_ID, HEADER_CORRELATION_ID],
    }


def _channel_description(topic: Topic) -> str:
    return (
        f"Kafka topic {topic.value}, keyed by patient id. A consumer that keeps failing on a "
        f"message parks it on {dlq_topic(topic)} and moves on."
    )


CATALOG_DESCRIPTION = (
    "Every event carebridge services exchange over Kafka, generated from the code by "
    "`make docs` (do not edit). Each message is a JSON envelope (event_id, type, version, "
    "occurred_at, producer, correlation_id, causation_id, subject, sequence) whose `data` is "
    "the event; type and version are also Kafka headers, and the key is the patient id. "
    "Adding an optional field keeps a version; any other change is a new version."
)
