"""Wiring of the booking service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_booking import api, handlers
from carebridge_booking.config import BookingSettings
from carebridge_booking.seed import seed_clinicians
from carebridge_shared.clock import Clock, SystemClock
from carebridge_shared.service import ServiceDefinition, create_app, serve

SERVICE = "booking"
MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["SERVICE", "BookingSettings", "build", "main"]


def build(settings: BookingSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    app = create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings or BookingSettings(),
            migrations=MIGRATIONS,
            routers=[api.router],
            register_handlers=handlers.register,
            on_startup=[seed_clinicians],
            clock=clock or SystemClock(),
        )
    )
    return app


def main() -> None:
    settings = BookingSettings()
    serve(build(settings), settings)
