"""Wiring of the booking service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_booking import api, handlers
from carebridge_booking.seed import seed_clinicians
from carebridge_booking.settings import SERVICE, BookingSettings
from carebridge_contracts import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
    BaseEvent,
    EarlierFollowUpOffered,
)
from carebridge_shared.clock import Clock, SystemClock
from carebridge_shared.service import ServiceDefinition, create_app, serve, service_main

MIGRATIONS = Path(__file__).parent / "migrations"
# Every event this service's outbox writes; the outbox refuses others, the catalog reads it.
PUBLISHES: tuple[type[BaseEvent], ...] = (
    AppointmentBooked,
    AppointmentRescheduled,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    EarlierFollowUpOffered,
)

__all__ = ["PUBLISHES", "SERVICE", "BookingSettings", "build", "main"]


def build(settings: BookingSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    app = create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings or BookingSettings(),
            migrations=MIGRATIONS,
            routers=[api.router],
            subscriptions=handlers.subscriptions,
            publishes=PUBLISHES,
            on_startup=[seed_clinicians],
            clock=clock or SystemClock(),
        )
    )
    return app


def start() -> None:
    settings = BookingSettings()
    serve(build(settings), settings)


def main() -> None:
    """`python -m carebridge_booking` runs the service; `... migrate` is its deploy step."""
    service_main(SERVICE, MIGRATIONS, start)
