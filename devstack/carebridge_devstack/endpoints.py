"""Where tests find Kafka and PostgreSQL: environment, Docker (testcontainers) or native.

Resolution order (``provide_endpoints``):

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` both set: use them as they are.
2. A Docker engine answers ``docker info``: Kafka and PostgreSQL containers (testcontainers)
   of the images ``images.IMAGES`` names (``CAREBRIDGE_KAFKA_IMAGE``/``..._POSTGRES_IMAGE``
   override them, e.g. with the local builds of ``make compose-test``), published on
   127.0.0.1 only. Set ``TESTCONTAINERS_RYUK_DISABLED=true`` where the Ryuk image cannot be
   pulled: the containers are removed when the session ends either way.
3. Otherwise the native :class:`~carebridge_devstack.stack.Stack` (shared by concurrent
   sessions; stopped at the end only if a session started it).

``CAREBRIDGE_DEVSTACK=env|docker|native`` forces one of them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from carebridge_contracts.services import declared_service

from ._util import DevstackError, free_port, run_async
from .images import IMAGES

Source = Literal["env", "docker", "native"]


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    database_url: str
    source: Source = "env"
    kafka_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Kafka login variables of the stack (the admin's, and each principal's password in
    ``CAREBRIDGE_<ROLE>_KAFKA_PASSWORD``); empty where the environment already has them."""

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            **self.kafka_env,
        }


def docker_available(timeout: float = 5.0) -> bool:
    """True if a Docker engine answers ``docker info`` within ``timeout`` seconds."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        out = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def choose_source() -> Source:
    forced = os.environ.get("CAREBRIDGE_DEVSTACK", "").strip().lower()
    if forced in ("env", "docker", "native"):
        if forced == "env" and not _env_endpoints():
            raise DevstackError(
                "CAREBRIDGE_DEVSTACK=env but KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL are not both set",
                "set both, or unset CAREBRIDGE_DEVSTACK",
            )
        return forced  # type: ignore[return-value]
    if _env_endpoints():
        return "env"
    if docker_available():
        return "docker"
    return "native"


def _env_endpoints() -> StackEndpoints | None:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    db = os.environ.get("DATABASE_URL", "").strip()
    if kafka and db:
        return StackEndpoints(kafka, db, "env")
    return None


@contextlib.contextmanager
def _docker_endpoints() -> Iterator[StackEndpoints]:
    # testcontainers' KafkaContainer drives Confluent images only (its start script
    # lives in /etc/confluent); apache/kafka is configured through KAFKA_* variables.
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # Clients use EXTERNAL (a fixed free host port, so it can be advertised before the
    # container starts); the broker reaches itself over BROKER inside the container.
    host = os.environ.get("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
    host_port = free_port()
    kafka = (
        DockerContainer(IMAGES["kafka"].current())
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="EXTERNAL://:9092,BROKER://:19092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"EXTERNAL://{host}:{host_port},BROKER://localhost:19092",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=(
                "CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT,EXTERNAL:PLAINTEXT"
            ),
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_NUM_PARTITIONS="3",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        )
        .waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    )
    postgres = PostgresContainer(
        IMAGES["postgres"].current(), username="postgres", password="postgres",
        dbname="carebridge", driver=None,
    )  # fmt: skip
    # Published on loopback only, so the tests' traffic stays on this machine. docker-py takes
    # (host ip, port) bindings; testcontainers' with_bind_ports takes only a port.
    kafka.ports["9092"] = ("127.0.0.1", host_port)  # type: ignore[assignment]
    postgres.ports["5432"] = ("127.0.0.1", free_port())  # type: ignore[assignment]
    with kafka, postgres:
        url = postgres.get_connection_url(driver=None)
        yield StackEndpoints(f"{host}:{host_port}", url, "docker")


@contextlib.contextmanager
def provide_endpoints(owner: str = "pytest") -> Iterator[StackEndpoints]:
    """Yield endpoints per the resolution order above; clean up what was started here."""
    source = choose_source()
    if source == "env":
        endpoints = _env_endpoints()
        assert endpoints is not None
        yield endpoints
    elif source == "docker":
        with _docker_endpoints() as endpoints:
            yield endpoints
    else:
        from .stack import Stack

        with Stack().lease(owner) as info:
            yield info.endpoints


# --------------------------------------------------------------------------- databases


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` instead (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def _asyncpg_url(url: str) -> str:
    """asyncpg wants postgresql://; accept SQLAlchemy-style postgresql+asyncpg:// too."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" if scheme.startswith("postgres") else scheme) + sep + rest


def create_database(url: str, prefix: str = "t_") -> str:
    """Create a uniquely named database on ``url``'s server; return its URL."""
    import asyncpg

    name = f"{prefix}{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(_asyncpg_url(url), timeout=15)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_async(create)
    return with_database(url, name)


def drop_database(url: str, via: str | None = None) -> None:
    """Drop the database ``url`` points at (disconnecting its sessions), connected
    through ``via`` (another database on the same server; default ``postgres``)."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    quoted = '"' + name.replace('"', '""') + '"'
    admin = via or with_database(url, "postgres")

    async def drop() -> None:
        conn = await asyncpg.connect(_asyncpg_url(admin), timeout=15)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        finally:
            await conn.close()

    run_async(drop)


# --------------------------------------------------------------------------- service roles


def dev_database_password(service: str) -> str:
    """The dev stacks' password of a service's role. The native PostgreSQL trusts local
    connections, so it only matters on servers that check passwords (docker compose sets its
    own); production passwords come from the deployment's secrets, never from here."""
    return f"carebridge-{service}-dev"


def service_migrations(service: str) -> Path:
    """The migrations directory a service ships (`carebridge_<service>.app.MIGRATIONS`)."""
    module = importlib.import_module(declared_service(service).app_module)
    return Path(module.MIGRATIONS)


def service_database_url(admin_url: str, service: str, migrations: Path | None = None) -> str:
    """Run ``service``'s deploy step in ``admin_url``'s database, as ``python -m
    carebridge_<service> migrate`` does: its owner and login roles and schema, its migrations
    applied as the owner (``migrations``, default: the ones the service ships), the login role's
    grants. Returns the URL the service connects with: it can use its tables but not change them,
    and cannot touch others' (ADR 0011, ADR 0014)."""
    from carebridge_shared.provisioning import deploy_service

    directory = migrations if migrations is not None else service_migrations(service)
    return run_async(
        lambda: deploy_service(
            _asyncpg_url(admin_url), service, dev_database_password(service), directory
        )
    )
