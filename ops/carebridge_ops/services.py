"""A service's own code as the ops commands need it: settings, migrations, handlers, projection.

Services are imported by name (`carebridge_<service>.app`, `.handlers`, `.store`), so a rebuild
runs exactly the handlers and migrations the running service has.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg

from carebridge_contracts.services import declared_service
from carebridge_ops.console import OpsError
from carebridge_ops.settings_doc import service_settings_class
from carebridge_shared.clock import Clock
from carebridge_shared.consumer import Subscriptions
from carebridge_shared.context import ServiceContext
from carebridge_shared.outbox import Outbox
from carebridge_shared.projection import Projection
from carebridge_shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceCode:
    name: str
    settings_class: type[ServiceSettings]
    migrations: Path
    subscriptions: Subscriptions[Any]
    projection: Projection | None  # None: the service declares no event-derived state

    def settings(self, **overrides: str) -> ServiceSettings:
        """The service's settings from the environment, as the running service reads them."""
        return self.settings_class(**cast(dict[str, Any], overrides))

    def context(
        self, settings: ServiceSettings, pool: asyncpg.Pool, schema: str, clock: Clock
    ) -> ServiceContext:
        """What the handlers get; the outbox writes into `schema` (a relay reads it, or none)."""
        return ServiceContext(self.name, settings, pool, Outbox(self.name, schema), clock)

    def consumed_topics(self) -> list[str]:
        """The topics the service subscribes to: those of its handlers' events."""
        return self.subscriptions.topics


def load(service: str) -> ServiceCode:
    try:
        declaration = declared_service(service)
    except LookupError as exc:
        raise OpsError(str(exc)) from None
    app = importlib.import_module(declaration.app_module)
    handlers = importlib.import_module(f"{declaration.package}.handlers")
    if not isinstance(getattr(handlers, "subscriptions", None), Subscriptions):
        raise OpsError(f"{declaration.package}.handlers declares no `subscriptions`")
    store = importlib.import_module(f"{declaration.package}.store")
    projection = getattr(store, "PROJECTION", None)
    if projection is not None and not isinstance(projection, Projection):
        raise OpsError(f"{declaration.package}.store.PROJECTION is not a Projection")
    return ServiceCode(
        name=service,
        settings_class=service_settings_class(service),
        migrations=Path(app.MIGRATIONS),
        subscriptions=handlers.subscriptions,
        projection=projection,
    )
