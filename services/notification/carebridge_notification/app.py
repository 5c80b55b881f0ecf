"""Wiring of the notification service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_contracts import BaseEvent, NotificationFailed, NotificationSent
from carebridge_notification import api, dispatcher, handlers, on_call
from carebridge_notification.settings import SERVICE, NotificationSettings
from carebridge_shared.clock import Clock, OffsetClock, SystemClock
from carebridge_shared.service import ServiceDefinition, create_app, serve, service_main

MIGRATIONS = Path(__file__).parent / "migrations"
# Every event this service's outbox writes; the outbox refuses others, the catalog reads it.
PUBLISHES: tuple[type[BaseEvent], ...] = (
    NotificationSent,
    NotificationFailed,
)

__all__ = ["PUBLISHES", "SERVICE", "NotificationSettings", "build", "main"]


def build(settings: NotificationSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The service app. With `dev_clock`, its clock is an OffsetClock moved by /v1/_dev/clock."""
    settings = settings or NotificationSettings()
    if clock is None:
        clock = OffsetClock() if settings.dev_clock else SystemClock()
    if settings.dev_clock and not isinstance(clock, OffsetClock):
        raise ValueError("dev_clock needs an OffsetClock")
    routers = [api.router, on_call.router]
    routers += [api.dev_router] if settings.dev_clock else []
    return create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings,
            migrations=MIGRATIONS,
            routers=routers,
            subscriptions=handlers.subscriptions,
            publishes=PUBLISHES,
            background=[dispatcher.dispatch] if settings.dispatcher_enabled else [],
            on_startup=[on_call.bootstrap_route],
            readiness_checks=[(on_call.READINESS_CHECK, on_call.route_problem)],
            clock=clock,
        )
    )


def start() -> None:
    settings = NotificationSettings()
    serve(build(settings), settings)


def main() -> None:
    """`python -m carebridge_notification` runs the service; `... migrate` is its deploy step."""
    service_main(SERVICE, MIGRATIONS, start)
