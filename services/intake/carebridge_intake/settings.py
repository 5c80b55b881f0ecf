"""Settings of the intake service (environment variables; docs/settings.md)."""

from __future__ import annotations

from carebridge_contracts.services import service_port
from carebridge_shared.settings import ServiceSettings, database_url_field

SERVICE = "intake"


class IntakeSettings(ServiceSettings):
    http_port: int = service_port(SERVICE)
    database_url: str = database_url_field(SERVICE)
