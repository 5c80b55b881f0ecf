"""`docker compose` on the repository's docker-compose.yml, for ``make compose-test``.

The published ports are variables of docker-compose.yml (``127.0.0.1:${VAR:-default}:port``);
they are read from the file, never repeated here, so a test run can pick free ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carebridge_ops.kafka_access import password_variable, principal_name

from ._util import DevstackError, find_repo_root
from .smtp_sink import Mailbox

_PUBLISHED = re.compile(r"^127\.0\.0\.1:\$\{(?P<var>\w+):-(?P<default>\d+)\}:(?P<port>\d+)$")


@dataclass(frozen=True)
class PublishedPort:
    service: str
    variable: str
    default: int
    container_port: int


def compose_file() -> Path:
    return find_repo_root() / "docker-compose.yml"


def published_ports(path: Path | None = None) -> dict[str, PublishedPort]:
    """Each service's published port, by service name (the first port of each)."""
    import yaml

    services: dict[str, Any] = yaml.safe_load((path or compose_file()).read_text())["services"]
    found: dict[str, PublishedPort] = {}
    for name, spec in services.items():
        for entry in spec.get("ports", []):
            match = _PUBLISHED.match(str(entry))
            if match is None:
                raise DevstackError(
                    f"docker-compose.yml: {name} publishes {entry!r}",
                    'publish as "127.0.0.1:${CAREBRIDGE_COMPOSE_<NAME>_PORT:-<port>}:<port>"',
                )
            found.setdefault(
                name,
                PublishedPort(name, match["var"], int(match["default"]), int(match["port"])),
            )
    return found


KAFKA_PROVISION = "kafka-provision"


def kafka_login(role: str, path: Path | None = None) -> dict[str, str]:
    """The ``CAREBRIDGE_KAFKA_*`` login of principal `role` (``ops``, ``booking``) on the compose
    broker, as a client on the host sets it: the password is the one `kafka-provision` gives
    that principal in docker-compose.yml, never repeated here."""
    import yaml

    services: dict[str, Any] = yaml.safe_load((path or compose_file()).read_text())["services"]
    passwords: dict[str, str] = services[KAFKA_PROVISION]["environment"]
    return {
        "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CAREBRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CAREBRIDGE_KAFKA_SASL_USERNAME": principal_name(role),
        "CAREBRIDGE_KAFKA_SASL_PASSWORD": passwords[password_variable(role)],
    }


@dataclass
class ComposeProject:
    """One compose project (``-p``) of docker-compose.yml with its own environment."""

    project: str
    env: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        docker = shutil.which("docker")
        if docker is None:
            raise DevstackError("the docker client is not installed", "apt-get install docker.io")
        flags = [flag for profile in self.profiles for flag in ("--profile", profile)]
        return [docker, "compose", "-p", self.project, "-f", str(compose_file()), *flags, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **self.env}, cwd=find_repo_root(), check=False,
        )  # fmt: skip
        if check and out.returncode != 0:
            raise DevstackError(
                f"docker compose {' '.join(args)} failed (exit {out.returncode}):\n"
                f"{(out.stdout + out.stderr).strip()[-4000:]}",
                f"inspect with `docker compose -p {self.project} ps -a` and `... logs`",
            )
        return out

    def containers(self) -> list[dict[str, Any]]:
        """``docker compose ps -a`` as dicts (Service, State, Health, ExitCode, ...)."""
        text = self.run("ps", "-a", "--format", "json").stdout.strip()
        if not text:
            return []
        if text.startswith("["):
            rows: list[dict[str, Any]] = json.loads(text)
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def container_id(self, service: str) -> str:
        found = self.run("ps", "-q", service).stdout.split()
        if len(found) != 1:
            raise DevstackError(f"{service}: expected one container, found {found}")
        return found[0]


class ComposeMailbox(Mailbox):
    """The SMTP sink container's mail, copied out (``docker compose cp``) on every read."""

    def __init__(
        self,
        compose: ComposeProject,
        directory: Path,
        service: str = "smtp",
        inside: str = "/tmp/mail",
    ) -> None:
        super().__init__(directory)
        self.compose = compose
        self.source = f"{service}:{inside}/."

    def paths(self) -> list[Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.compose.run("cp", self.source, str(self.directory))
        return super().paths()
