"""What each service publishes and consumes, read from its code.

Consumed events: the service's `handlers.register` runs against a consumer runtime that is never
started and only records which event classes get a handler. Published events: the `PUBLISHES`
declaration of the service's `app.py`, which its outbox enforces (it refuses any other event).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from carebridge_contracts import BaseEvent
from carebridge_contracts.registry import RegistryEntry, entries
from carebridge_contracts.services import SERVICES, declared_service
from carebridge_ops.settings_doc import service_settings_class
from carebridge_shared.clock import SystemClock
from carebridge_shared.consumer import ConsumerRuntime, EventContext, Handler
from carebridge_shared.outbox import Outbox
from carebridge_shared.service import RegisterHandlers, ServiceContext

if TYPE_CHECKING:
    import asyncpg

E = TypeVar("E", bound=BaseEvent)


class CatalogError(RuntimeError):
    """The code does not say clearly what a service publishes or consumes."""


@dataclass(frozen=True)
class ServiceEvents:
    """The events one service writes to its outbox and the ones it has handlers for."""

    service: str
    publishes: tuple[RegistryEntry, ...]
    consumes: tuple[RegistryEntry, ...]


class RecordingRuntime(ConsumerRuntime):
    """A consumer runtime that is never started: it records the event classes given handlers.

    Constructing the base runtime connects nothing (its broker connects on `start`), so the
    handlers are registered exactly as in the running service, duplicate checks included.
    """

    def __init__(self, group_id: str) -> None:
        super().__init__(
            bootstrap_servers="catalog.invalid:9092",
            pool=cast("asyncpg.Pool", None),  # never started: the pool is never touched
            group_id=group_id,
            producer_factory=_no_producer,
        )
        self.handled: list[type[BaseEvent]] = []

    def on(
        self, event_cls: type[E]
    ) -> Callable[[Callable[[E, EventContext], Awaitable[None]]], Handler]:
        self.handled.append(event_cls)
        return super().on(event_cls)


def _no_producer() -> Any:
    raise CatalogError("the recording runtime never produces")


def entry_of(model: type[BaseEvent]) -> RegistryEntry:
    for entry in entries():
        if entry.model is model:
            return entry
    raise CatalogError(f"{model.__name__} is not in the contracts registry")


def declared_publishes(service: str) -> tuple[type[BaseEvent], ...]:
    """The `PUBLISHES` tuple of `carebridge_<service>.app`."""
    module = importlib.import_module(declared_service(service).app_module)
    declared = getattr(module, "PUBLISHES", None)
    if not isinstance(declared, tuple) or not all(
        isinstance(model, type) and issubclass(model, BaseEvent) for model in declared
    ):
        raise CatalogError(f"carebridge_{service}.app must declare PUBLISHES: a tuple of events")
    return declared


def recorded_consumes(service: str) -> tuple[type[BaseEvent], ...]:
    """The event classes `carebridge_<service>.handlers.register` gives handlers to."""
    module = importlib.import_module(f"{declared_service(service).package}.handlers")
    register = cast("RegisterHandlers | None", getattr(module, "register", None))
    if register is None:
        raise CatalogError(f"carebridge_{service}.handlers has no register(runtime, context)")
    runtime = RecordingRuntime(group_id=service)
    register(runtime, _offline_context(service))
    return tuple(runtime.handled)


def _offline_context(service: str) -> ServiceContext:
    """A context good enough to register handlers: nothing in it is connected, and the settings
    are the defaults (not the environment, which must not change the catalog)."""
    return ServiceContext(
        name=service,
        settings=service_settings_class(service).model_construct(),
        pool=cast("asyncpg.Pool", None),
        outbox=Outbox(service, service, publishes=declared_publishes(service)),
        clock=SystemClock(),
    )


def service_events(service: str) -> ServiceEvents:
    return ServiceEvents(
        service=service,
        publishes=_sorted(declared_publishes(service)),
        consumes=_sorted(recorded_consumes(service)),
    )


def all_service_events() -> tuple[ServiceEvents, ...]:
    return tuple(service_events(service) for service in SERVICES)


def _sorted(models: tuple[type[BaseEvent], ...]) -> tuple[RegistryEntry, ...]:
    found = {entry_of(model) for model in models}
    if len(found) != len(models):
        raise CatalogError("an event class is listed twice")
    return tuple(entry for entry in entries() if entry in found)
