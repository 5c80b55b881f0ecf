"""Wiring of the intake service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_contracts import (
    AssessmentCompleted,
    BaseEvent,
    OutcomeMeasured,
    SafetyRiskFlagged,
    SymptomsWorsened,
)
from carebridge_intake import api, handlers
from carebridge_intake.settings import SERVICE, IntakeSettings
from carebridge_shared.service import ServiceDefinition, create_app, serve, service_main

__all__ = ["PUBLISHES", "SERVICE", "IntakeSettings", "build", "main"]

MIGRATIONS = Path(__file__).parent / "migrations"
# Every event this service's outbox writes; the outbox refuses others, the catalog reads it.
PUBLISHES: tuple[type[BaseEvent], ...] = (
    AssessmentCompleted,
    SafetyRiskFlagged,
    OutcomeMeasured,
    SymptomsWorsened,
)


def build(settings: IntakeSettings | None = None) -> FastAPI:
    return create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings or IntakeSettings(),
            migrations=MIGRATIONS,
            routers=[api.router],
            subscriptions=handlers.subscriptions,
            publishes=PUBLISHES,
        )
    )


def start() -> None:
    settings = IntakeSettings()
    serve(build(settings), settings)


def main() -> None:
    """`python -m carebridge_intake` runs the service; `... migrate` is its deploy step."""
    service_main(SERVICE, MIGRATIONS, start)
