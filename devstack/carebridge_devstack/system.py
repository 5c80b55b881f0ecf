"""The whole carebridge system as local processes: SMTP sink + the four services.

`make run` and the journey tests both use it, so the demo and the tests start the system
the same way. A service may run as several replicas (``replicas={"booking": 2}``): processes
``booking-1``, ``booking-2``, each on its own port, sharing the consumer group and database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from carebridge_contracts.services import SERVICES as SERVICES  # older imports read it here
from carebridge_devstack.signer import DEV_AUTH_ENV, dev_signer

from ._util import free_port
from .endpoints import StackEndpoints, create_database, drop_database, service_database_url
from .kafka_auth import password_variables, role_login_env
from .processes import SERVICE_PORTS, Echo, ProcessGroup, ProcessSpec, service_spec, smtp_sink_spec
from .smtp_sink import Mailbox

# The on-call route the dev stack starts with (the SMTP sink receives it): urgent safety alerts
# go here, the escalation when it cannot be sent. Set by notification's bootstrap setting only
# while no route exists; ops change it with PUT /v1/on-call-route (ADR 0015).
ON_CALL_EMAIL = "on-call@clinicians.example"
ON_CALL_ESCALATION_EMAIL = "on-call-escalation@clinicians.example"


def instance_names(service: str, count: int) -> list[str]:
    """Process names of a service's replicas: the service name alone when there is one."""
    if count < 1:
        raise ValueError(f"{service}: at least one replica is needed, not {count}")
    return [service] if count == 1 else [f"{service}-{i}" for i in range(1, count + 1)]


@dataclass
class SystemPorts:
    """Ports of the first replica of each service (``services``), of the SMTP sink, and of
    further replicas by process name (``extra``; free ports are picked for missing ones)."""

    services: dict[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    smtp: int = 2525
    extra: dict[str, int] = field(default_factory=dict)

    @classmethod
    def free(cls) -> SystemPorts:
        return cls(services={name: free_port() for name in SERVICES}, smtp=free_port())


class LocalSystem:
    """Starts the sink and the services against one Kafka and one database; stops them all."""

    def __init__(
        self,
        endpoints: StackEndpoints,
        work_dir: Path,
        *,
        ports: SystemPorts | None = None,
        echo: Echo | None = None,
        supervise: bool = False,
        extra_env: dict[str, dict[str, str]] | None = None,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.ports = ports or SystemPorts()
        self.bootstrap = endpoints.kafka_bootstrap
        self._admin_database_url = endpoints.database_url
        self._database_url_given = {
            n for n, env in (extra_env or {}).items() if "DATABASE_URL" in env
        }
        self.mail_dir = work_dir / "mail"
        self.log_dir = work_dir / "logs"
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        base_env = _base_env(endpoints)
        per_service = _per_service_env(self.ports, extra_env or {})
        counts = {name: (replicas or {}).get(name, 1) for name in SERVICES}
        self.instances: dict[str, list[str]] = {
            name: instance_names(name, counts[name]) for name in SERVICES
        }
        self._instance_ports: dict[str, int] = {}
        specs = [
            smtp_sink_spec(self.ports.smtp, self.mail_dir),
            *self._service_specs(base_env, per_service),
        ]
        self.group = ProcessGroup(specs, self.log_dir, echo=echo, restart_crashed=supervise)

    def _service_specs(
        self, base_env: dict[str, str], per_service: dict[str, dict[str, str]]
    ) -> list[ProcessSpec]:
        """One process per replica; the first on the service's own port, the others on their
        `SystemPorts.extra` port or a free one."""
        specs: list[ProcessSpec] = []
        inherited = {**os.environ, **base_env}
        for service in SERVICES:
            # Each service logs in to Kafka as its own principal (ADR 0013) and never sees
            # another's password; without one known, it keeps the environment's login.
            login = role_login_env(service, inherited) or {}
            for i, instance in enumerate(self.instances[service]):
                port = self.ports.services[service] if i == 0 else self.ports.extra.get(instance)
                port = port or free_port()
                self._instance_ports[instance] = port
                env = {**login, **per_service.get(service, {})}
                env.setdefault("CAREBRIDGE_INSTANCE_ID", instance)
                spec = service_spec(service, port, base_env, env)
                spec.name = instance
                spec.withheld = tuple(password_variables(inherited))
                specs.append(spec)
        return specs

    def url(self, service: str) -> str:
        """Base URL of the service's first replica (or of one process, by its name)."""
        instance = self.instances[service][0] if service in self.instances else service
        return self.instance_url(instance)

    def urls(self, service: str) -> list[str]:
        """Base URLs of every replica of the service."""
        return [self.instance_url(instance) for instance in self.instances[service]]

    def instance_url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self._instance_ports[instance]}"

    def service_of(self, instance: str) -> str:
        for service, names in self.instances.items():
            if instance in names:
                return service
        raise KeyError(instance)

    @property
    def mailbox(self) -> Mailbox:
        return Mailbox(self.mail_dir)

    def start(self, timeout: float = 120.0) -> dict[str, float]:
        """Start everything; returns seconds until each process was ready."""
        self._provision_databases()
        self.group.start()
        try:
            return self.group.wait_ready(timeout)
        except BaseException:
            self.group.stop()
            raise

    def stop(self) -> dict[str, int | None]:
        return self.group.stop()

    def _provision_databases(self) -> None:
        """Run each service's deploy step (its roles, its migrations as the owner role) and give
        it its login role's URL (ADR 0011, ADR 0014), unless the caller gave it a DATABASE_URL
        of its own."""
        for service in SERVICES:
            if service in self._database_url_given:
                continue
            url = service_database_url(self._admin_database_url, service)
            for instance in self.instances[service]:
                self.group[instance].spec.env["DATABASE_URL"] = url


@contextlib.contextmanager
def isolated_system(
    endpoints: StackEndpoints,
    work_dir: Path,
    *,
    label: str,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 180.0,
) -> Iterator[tuple[LocalSystem, str]]:
    """The four services on a new database of their own (yielded with its admin URL), each in
    a consumer group of its own that starts at the end of every topic: they see only what
    happens after they start, never the history other tests left on the shared topics.
    Stopped, and the database dropped, on exit."""
    database_url = create_database(endpoints.database_url, prefix=f"{label}_")
    run = uuid.uuid4().hex[:8]
    env = {
        name: {
            "CAREBRIDGE_CONSUMER_GROUP": f"{name}-{label}-{run}",
            "CAREBRIDGE_CONSUMER_OFFSET_RESET": "latest",
            **(extra_env or {}).get(name, {}),
        }
        for name in SERVICES
    }
    system = LocalSystem(
        dataclasses.replace(endpoints, database_url=database_url),
        work_dir,
        ports=SystemPorts.free(),
        extra_env=env,
    )
    try:
        system.start(timeout=timeout)
        yield system, database_url
    finally:
        system.stop()
        drop_database(database_url)


def _base_env(endpoints: StackEndpoints) -> dict[str, str]:
    """What every service gets: the stack's endpoints, INFO logs and the dev signing key."""
    return {
        **endpoints.env,
        "CAREBRIDGE_LOG_LEVEL": "INFO",
        # The services trust tokens signed with this machine's dev key (ADR 0012), which
        # they refuse without the dev flag (ADR 0014).
        "CAREBRIDGE_AUTH_PUBLIC_KEYS": dev_signer().public_pem,
        **DEV_AUTH_ENV,
    }


def _per_service_env(
    ports: SystemPorts, extra_env: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """Notification's SMTP sink, dev clock and on-call addresses, and the caller's extras."""
    per_service: dict[str, dict[str, str]] = {
        "notification": {
            "CAREBRIDGE_SMTP_HOST": "127.0.0.1",
            "CAREBRIDGE_SMTP_PORT": str(ports.smtp),
            "CAREBRIDGE_DEV_CLOCK": "true",
            "CAREBRIDGE_DISPATCH_INTERVAL_MS": "200",
            "CAREBRIDGE_ON_CALL_BOOTSTRAP_PRIMARY_EMAIL": ON_CALL_EMAIL,
            "CAREBRIDGE_ON_CALL_BOOTSTRAP_ESCALATION_EMAIL": ON_CALL_ESCALATION_EMAIL,
            # A follow-up's reminder links to this system's intake for the repeat measures.
            "CAREBRIDGE_OUTCOME_MEASURE_URL": (
                f"http://127.0.0.1:{ports.services['intake']}/v1/outcome-measures"
            ),
        }
    }
    for name, env in extra_env.items():
        per_service.setdefault(name, {}).update(env)
    return per_service
