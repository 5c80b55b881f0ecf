"""What each service publishes and consumes, read from its code.

Consumed events: the event classes the service's `handlers.subscriptions` gives a handler to,
exactly as its consumer runtime dispatches them. Published events: the `PUBLISHES`
declaration of the service's `app.py`, which its outbox enforces (it refuses any other event).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from carebridge_contracts import BaseEvent
from carebridge_contracts.registry import RegistryEntry, entries
from carebridge_contracts.services import SERVICES, declared_service
from carebridge_shared.consumer import Subscriptions


class CatalogError(RuntimeError):
    """The code does not say clearly what a service publishes or consumes."""


@dataclass(frozen=True)
class ServiceEvents:
    """The events one service writes to its outbox and the ones it has handlers for."""

    service: str
    publishes: tuple[RegistryEntry, ...]
    consumes: tuple[RegistryEntry, ...]


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
    """The event classes `carebridge_<service>.handlers.subscriptions` gives handlers to."""
    module = importlib.import_module(f"{declared_service(service).package}.handlers")
    subscriptions = getattr(module, "subscriptions", None)
    if not isinstance(subscriptions, Subscriptions):
        raise CatalogError(
            f"carebridge_{service}.handlers has no `subscriptions = Subscriptions[...]()`"
        )
    return subscriptions.events


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
