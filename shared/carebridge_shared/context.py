"""The context one service process shares: routes, handlers, hooks and tasks all read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic

import asyncpg
from typing_extensions import TypeVar

from carebridge_shared.clock import Clock
from carebridge_shared.outbox import Outbox
from carebridge_shared.settings import ServiceSettings

# The settings class of one service; a bare ServiceContext is one of ServiceSettings.
S = TypeVar("S", bound=ServiceSettings, default=ServiceSettings)


@dataclass
class ServiceContext(Generic[S]):
    """What handlers, API routes and background tasks of one service share; `settings` is the
    service's own settings class (``ServiceContext[BookingSettings]``), so nothing downcasts."""

    name: str
    settings: S
    pool: asyncpg.Pool
    outbox: Outbox
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)
