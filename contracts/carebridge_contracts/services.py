"""The services of carebridge, each declared once: its name and its HTTP port on a dev machine.

Everything that lists the services reads this tuple: the service's own settings (its default
port), the dev stack and `make run`, the ops commands, the settings table, docker compose checks
and the tests. Adding a service is one line here plus its package (ADR 0018).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceDeclaration:
    name: str
    port: int
    """HTTP port on a dev machine (`make run`, docker compose); the default of its settings."""

    @property
    def package(self) -> str:
        """The service's Python package; `python -m <package>` runs it."""
        return f"carebridge_{self.name}"

    @property
    def app_module(self) -> str:
        """The module that defines the service: its settings class, `build()` and `PUBLISHES`."""
        return f"{self.package}.app"

    @property
    def settings_class_name(self) -> str:
        return f"{self.name.capitalize()}Settings"


SERVICE_DECLARATIONS: tuple[ServiceDeclaration, ...] = (
    ServiceDeclaration("intake", 8001),
    ServiceDeclaration("booking", 8002),
    ServiceDeclaration("referral", 8003),
    ServiceDeclaration("notification", 8004),
)

SERVICES: tuple[str, ...] = tuple(declaration.name for declaration in SERVICE_DECLARATIONS)


def declared_service(name: str) -> ServiceDeclaration:
    """The declaration of service `name`; raises LookupError naming the known services."""
    for declaration in SERVICE_DECLARATIONS:
        if declaration.name == name:
            return declaration
    raise LookupError(f"unknown service {name!r}: one of {', '.join(SERVICES)}")


def service_port(name: str) -> int:
    """The dev-machine HTTP port of service `name`."""
    return declared_service(name).port
