"""Wiring of the referral service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from carebridge_referral import api, handlers
from carebridge_shared.service import ServiceDefinition, create_app, serve
from carebridge_shared.settings import ServiceSettings

SERVICE = "referral"
MIGRATIONS = Path(__file__).parent / "migrations"


class ReferralSettings(ServiceSettings):
    http_port: int = 8003


def build(settings: ReferralSettings | None = None) -> FastAPI:
    return create_app(
        ServiceDefinition(
            name=SERVICE,
            settings=settings or ReferralSettings(),
            migrations=MIGRATIONS,
            routers=[api.router],
            register_handlers=handlers.register,
        )
    )


def main() -> None:
    settings = ReferralSettings()
    serve(build(settings), settings)
