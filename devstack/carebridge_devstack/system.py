"""The whole carebridge system as local processes: SMTP sink + the four services.

`make run` and the journey tests both use it, so the demo and the tests start the system
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._util import free_port
from .endpoints import StackEndpoints
from .processes import SERVICE_PORTS, Echo, ProcessGroup, ProcessSpec, service_spec, smtp_sink_spec
from .smtp_sink import Mailbox

SERVICES = ("intake", "booking", "referral", "notification")


@dataclass
class SystemPorts:
    services: dict[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    smtp: int = 2525

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
    ) -> None:
        self.ports = ports or SystemPorts()
        self.bootstrap = endpoints.kafka_bootstrap
        self.mail_dir = work_dir / "mail"
        self.log_dir = work_dir / "logs"
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        base_env = {**endpoints.env, "CAREBRIDGE_LOG_LEVEL": "INFO"}
        per_service: dict[str, dict[str, str]] = {
            "notification": {
                "CAREBRIDGE_SMTP_HOST": "127.0.0.1",
                "CAREBRIDGE_SMTP_PORT": str(self.ports.smtp),
                "CAREBRIDGE_DEV_CLOCK": "true",
                "CAREBRIDGE_DISPATCH_INTERVAL_MS": "200",
            }
        }
        for name, env in (extra_env or {}).items():
            per_service.setdefault(name, {}).update(env)
        specs: list[ProcessSpec] = [smtp_sink_spec(self.ports.smtp, self.mail_dir)]
        specs += [
            service_spec(name, self.ports.services[name], base_env, per_service.get(name))
            for name in SERVICES
        ]
        self.group = ProcessGroup(specs, self.log_dir, echo=echo, restart_crashed=supervise)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.services[service]}"

    @property
    def mailbox(self) -> Mailbox:
        return Mailbox(self.mail_dir)

    def start(self, timeout: float = 120.0) -> dict[str, float]:
        """Start everything; returns seconds until each process was ready."""
        self.group.start()
        try:
            return self.group.wait_ready(timeout)
        except BaseException:
            self.group.stop()
            raise

    def stop(self) -> dict[str, int | None]:
        return self.group.stop()
