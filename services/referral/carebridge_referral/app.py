"""Wiring of the referral service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_contracts import (
    BaseEvent,
    CarePlanUpdated,
    CareTeamEnded,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    ConsentGranted,
    ConsentRevoked,
    ReferralWaitlisted,
    TherapistMatched,
    TherapistRequested,
)
from carebridge_referral import api, handlers
from carebridge_referral.roster import seed_therapists
from carebridge_referral.settings import SERVICE, ReferralSettings
from carebridge_shared.clock import Clock, SystemClock
from carebridge_shared.service import ServiceDefinition, create_app, serve, service_main

MIGRATIONS = Path(__file__).parent / "migrations"
# Every event this service's outbox writes; the outbox refuses others, the catalog reads it.
PUBLISHES: tuple[type[BaseEvent], ...] = (
    TherapistRequested,
    TherapistMatched,
    ReferralWaitlisted,
    CareTeamFormed,
    CareTeamMemberJoined,
    CareTeamMemberLeft,
    CareTeamEnded,
    CarePlanUpdated,
    ConsentGranted,
    ConsentRevoked,
)

__all__ = ["PUBLISHES", "SERVICE", "ReferralSettings", "build", "main"]


def build(settings: ReferralSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    app = create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings or ReferralSettings(),
            migrations=MIGRATIONS,
            routers=[api.router],
            subscriptions=handlers.subscriptions,
            publishes=PUBLISHES,
            on_startup=[seed_therapists],
            clock=clock or SystemClock(),
        )
    )
    return app


def start() -> None:
    settings = ReferralSettings()
    serve(build(settings), settings)


def main() -> None:
    """`python -m carebridge_referral` runs the service; `... migrate` is its deploy step."""
    service_main(SERVICE, MIGRATIONS, start)
