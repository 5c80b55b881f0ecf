"""Event subscribers of the intake service."""

from __future__ import annotations

from carebridge_shared.consumer import ConsumerRuntime
from carebridge_shared.service import ServiceContext


def register(runtime: ConsumerRuntime, context: ServiceContext) -> None:
    """No subscriptions: intake consumes no events today."""
