"""The native local stack: Kafka + PostgreSQL as plain processes under one directory.

    stack = Stack()          # <repo>/.stack, ports 29092/29093 and 25432 (env overrides)
    info = stack.up()        # idempotent; reuses a healthy running stack
    stack.down()             # idempotent; leaves no process behind

Environment: ``CAREBRIDGE_STACK_DIR``, ``CAREBRIDGE_KAFKA_PORT``,
``CAREBRIDGE_KAFKA_CONTROLLER_PORT``, ``CAREBRIDGE_KAFKA_NODES``,
``CAREBRIDGE_KAFKA_VERSION``, ``CAREBRIDGE_PG_PORT``, ``CAREBRIDGE_PG_FSYNC`` (0/off).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from carebridge_ops.hints import devstack
from carebridge_ops.local_stack import STACK_DIR_ENV, STACK_ENV_FILE

from ._util import (
    DevstackError,
    file_lock,
    find_repo_root,
    pid_alive,
    proc_cmdline,
    processes_mentioning,
    terminate,
    write_private,
)
from .endpoints import StackEndpoints
from .kafka import KafkaCluster
from .kafka_auth import MECHANISM, KafkaAuth, StackLogins, kafka_auth_mode
from .kafka_config import SaslScram
from .kafka_jars import KAFKA_VERSION
from .postgres import PostgresServer

# Seconds Kafka and PostgreSQL get to become ready: seconds on a quiet machine, but a broker
# with SCRAM logins on 2 cores shared with other stacks has taken over two minutes.
READY_TIMEOUT_S = 240.0

T = TypeVar("T")

LOGINS_FILE = "kafka-logins.json"  # under the stack directory; it survives `down --purge`
DEFAULT_KAFKA_PORT = 29092
DEFAULT_PG_PORT = 25432


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise DevstackError(f"{name}={value!r} is not an integer", f"fix or unset {name}") from exc


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in {"0", "off", "false", "no"}


def _others_can_enter(path: Path) -> bool:
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return False
    return True


def postgres_dir(stack_dir: Path) -> Path:
    """Where PostgreSQL keeps its data: under the stack, unless the unprivileged user that runs
    it (root may not) could not enter the stack directory (a checkout under /root, say)."""
    if os.geteuid() != 0 or _others_can_enter(stack_dir):
        return stack_dir / "postgres"
    digest = hashlib.sha256(str(stack_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"carebridge-{digest}" / "postgres"


def default_stack_dir() -> Path:
    override = os.environ.get(STACK_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return find_repo_root() / ".stack"


@dataclass(frozen=True)
class StackInfo:
    """What ``up()`` returns: endpoints, where things live, and how long readiness took."""

    kafka_bootstrap: str
    database_url: str
    stack_dir: Path
    env_file: Path
    kafka_ready_s: float
    postgres_ready_s: float
    total_s: float
    kafka_reused: bool
    postgres_reused: bool
    kafka_env: dict[str, str] = field(default_factory=dict, repr=False)
    """The admin's Kafka login and every principal's password (empty without Kafka auth)."""

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            **self.kafka_env,
        }

    @property
    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(self.kafka_bootstrap, self.database_url, "native", self.kafka_env)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    pids: list[int]
    endpoint: str
    log: Path


@dataclass(frozen=True)
class StackStatus:
    stack_dir: Path
    components: list[ComponentStatus] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    auto_started: bool = False

    @property
    def running(self) -> bool:
        return all(c.running for c in self.components)

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components)


def _timed(fn: Callable[[], None]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started


class Stack:
    """Kafka (1..N KRaft nodes) and PostgreSQL started in parallel under ``stack_dir``."""

    def __init__(
        self,
        stack_dir: Path | None = None,
        *,
        kafka_port: int | None = None,
        kafka_controller_port: int | None = None,
        kafka_nodes: int | None = None,
        kafka_version: str | None = None,
        kafka_heap: str = "512m",
        pg_port: int | None = None,
        pg_fsync: bool | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        console: Console | None = None,
        kafka_auth: KafkaAuth | None = None,
    ) -> None:
        self.dir = (stack_dir or default_stack_dir()).resolve()
        port = kafka_port or _env_int("CAREBRIDGE_KAFKA_PORT", DEFAULT_KAFKA_PORT)
        cport = kafka_controller_port or _env_int("CAREBRIDGE_KAFKA_CONTROLLER_PORT", port + 1)
        self.kafka_auth = kafka_auth or kafka_auth_mode()
        self.logins: StackLogins | None = None
        sasl: SaslScram | None = None
        if self.kafka_auth == "scram":
            from carebridge_ops.kafka_access import managed_roles

            self.logins = StackLogins.load_or_create(self.dir / LOGINS_FILE, managed_roles())
            sasl = SaslScram(self.logins.format_time_users(), MECHANISM, authorize=True)
        self.kafka = KafkaCluster(
            self.dir / "kafka",
            nodes=kafka_nodes or _env_int("CAREBRIDGE_KAFKA_NODES", 1),
            port=port,
            controller_port=cport,
            version=kafka_version or os.environ.get("CAREBRIDGE_KAFKA_VERSION") or KAFKA_VERSION,
            heap=kafka_heap,
            sasl=sasl,
        )
        self.postgres = PostgresServer(
            postgres_dir(self.dir),
            port=pg_port or _env_int("CAREBRIDGE_PG_PORT", DEFAULT_PG_PORT),
            fsync=pg_fsync if pg_fsync is not None else _env_bool("CAREBRIDGE_PG_FSYNC", True),
        )
        self.ready_timeout = ready_timeout
        self.console = console
        self.env_file = self.dir / STACK_ENV_FILE
        self._lock_file = self.dir / ".lock"
        self._auto_marker = self.dir / "auto-started"
        self._leases_dir = self.dir / "leases"

    # -- endpoints

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def kafka_env(self) -> dict[str, str]:
        """The admin's Kafka login and every principal's password; empty without Kafka auth."""
        return self.logins.env() if self.logins is not None else {}

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            **self.kafka_env(),
        }

    def _write_env_file(self) -> None:
        text = "".join(f"{key}={value}\n" for key, value in self.env().items())
        write_private(self.env_file, text)  # it holds the Kafka passwords

    def _provision_kafka(self, *, restarted: bool) -> None:
        """Users, ACLs and topics as the code's access plan says (`carebridge kafka
        provision`), when the brokers were (re)started or the plan changed since."""
        if self.logins is None:
            return
        from carebridge_ops.console import OpsError
        from carebridge_ops.kafka_access import ADMIN, access_plan
        from carebridge_ops.kafka_provision import provision

        plan = access_plan()
        marker = self.dir / "kafka" / "provisioned.json"
        fingerprint = hashlib.sha256(
            repr((plan, sorted(self.logins.passwords.items()), self.kafka_bootstrap)).encode()
        ).hexdigest()
        if not restarted and marker.exists() and marker.read_text().strip() == fingerprint:
            return
        log = self.dir / "kafka" / "provision.log"
        with log.open("a") as out:
            try:
                report = provision(
                    self.kafka_bootstrap,
                    self.logins.security(ADMIN),
                    self.logins.managed_passwords(),
                    plan=plan,
                    echo=lambda line: print(line, file=out, flush=True),
                )
            except OpsError as exc:
                raise DevstackError(
                    f"provisioning the Kafka principals and ACLs failed: {exc}",
                    f"read {log}; `{devstack('down --purge')}` starts afresh",
                ) from exc
        marker.write_text(fingerprint + "\n")
        if self.console is not None:
            self.console.print(
                f"Kafka principals and ACLs provisioned ({report.acls_created} ACLs created, "
                f"{report.acls_removed} removed, {len(report.topics_created)} topics created)"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock_file):
            yield

    # -- lifecycle

    def up(self) -> StackInfo:
        """Start what is not running (Kafka and PostgreSQL in parallel), wait until both
        are ready, write ``stack.env``. Reuses healthy running components."""
        with self._locked():
            info = self._up_locked()
            self._auto_marker.unlink(missing_ok=True)  # started/claimed by hand: keep it
            return info

    def _up_locked(self) -> StackInfo:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        kafka_reused = self.kafka.is_running() and self.kafka.is_healthy()
        pg_reused = self.postgres.is_running() and self.postgres.is_healthy()

        def start_kafka() -> None:
            if not kafka_reused:
                self.kafka.start(self.ready_timeout, console=self.console)

        def start_pg() -> None:
            if pg_reused:
                self.postgres.ensure_database(self.postgres.database)
            else:
                self.postgres.start(self.ready_timeout, console=self.console)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="devstack-up") as pool:
            kafka_f: Future[float] = pool.submit(_timed, start_kafka)
            pg_f: Future[float] = pool.submit(_timed, start_pg)
            errors: list[BaseException] = []
            timings: list[float] = []
            for fut in (kafka_f, pg_f):
                try:
                    timings.append(fut.result())
                except BaseException as exc:
                    errors.append(exc)
        if errors:
            # leave nothing half-started behind; logs stay for diagnosis
            if not kafka_reused:
                self.kafka.stop(timeout=10)
            if not pg_reused:
                self.postgres.stop()
            if len(errors) == 2:
                raise DevstackError(
                    f"{errors[0]}\n\nAlso: {errors[1]}",
                    getattr(errors[0], "hint", "") or "see the messages above",
                ) from errors[0]
            raise errors[0]
        self._provision_kafka(restarted=not kafka_reused)
        self._write_env_file()
        return StackInfo(
            kafka_bootstrap=self.kafka_bootstrap,
            database_url=self.database_url,
            stack_dir=self.dir,
            env_file=self.env_file,
            kafka_ready_s=timings[0],
            postgres_ready_s=timings[1],
            total_s=time.monotonic() - started,
            kafka_reused=kafka_reused,
            postgres_reused=pg_reused,
            kafka_env=self.kafka_env(),
        )

    def down(self, *, purge: bool = False, timeout: float = 30.0) -> bool:
        """Stop Kafka (SIGTERM, SIGKILL after ``timeout``) and PostgreSQL (``pg_ctl stop -m
        fast``) in parallel; then make sure no process of this stack is left. Idempotent.
        ``purge`` also deletes all data. True if everything stopped cleanly."""
        with self._locked():
            return self._down_locked(purge=purge, timeout=timeout)

    def _down_locked(self, *, purge: bool, timeout: float) -> bool:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="devstack-down") as pool:
            kafka_f = pool.submit(self.kafka.stop, timeout)
            pg_f = pool.submit(self.postgres.stop)
            clean = kafka_f.result() and pg_f.result()
        # anything still mentioning our directories (e.g. a server whose pidfile was lost)
        for pid in self._stray_processes():
            clean = False
            terminate(pid, timeout=10)
        self._auto_marker.unlink(missing_ok=True)
        self.env_file.unlink(missing_ok=True)
        if purge:
            self.kafka.purge()
            self.postgres.purge()
        return clean

    def _stray_processes(self) -> list[int]:
        """Servers or reapers of this stack that are still alive (e.g. pidfile lost)."""
        stray: list[int] = []
        roots = {str(self.dir) + "/", str(self.postgres.base_dir) + "/"}
        for pid in sorted({p for root in roots for p in processes_mentioning(root)}):
            cmdline = proc_cmdline(pid)
            exe = Path(cmdline[0]).name if cmdline else ""
            if exe in {"java", "postgres"} or any(a.endswith("_reaper.py") for a in cmdline):
                stray.append(pid)
        return stray

    def status(self, probe: bool = True) -> StackStatus:
        kafka_pids = list(self.kafka.running_pids().values())
        pg_pid = self.postgres.pid()
        kafka_running = self.kafka.is_running()
        pg_running = pg_pid is not None
        return StackStatus(
            stack_dir=self.dir,
            components=[
                ComponentStatus(
                    name=f"kafka ({len(self.kafka.nodes)} node{'s' * (len(self.kafka.nodes) > 1)})",
                    running=kafka_running,
                    healthy=kafka_running and probe and self.kafka.is_healthy(),
                    pids=kafka_pids,
                    endpoint=self.kafka_bootstrap,
                    log=self.kafka.nodes[0].log_file,
                ),
                ComponentStatus(
                    name="postgresql",
                    running=pg_running,
                    healthy=pg_running and probe and self.postgres.is_healthy(),
                    pids=[pg_pid] if pg_pid else [],
                    endpoint=self.database_url,
                    log=self.postgres.log_file,
                ),
            ],
            leases=[p.name for p in self._live_leases()],
            auto_started=self._auto_marker.exists(),
        )

    def pids(self) -> dict[str, list[int]]:
        """Server pids by component (for tests that check nothing is left)."""
        pg = self.postgres.pid()
        return {"kafka": list(self.kafka.running_pids().values()), "postgres": [pg] if pg else []}

    # -- shared use by test sessions

    def _live_leases(self) -> list[Path]:
        live: list[Path] = []
        if not self._leases_dir.is_dir():
            return live
        for lease in self._leases_dir.iterdir():
            try:
                pid = int(lease.name.split("-", 1)[0])
            except ValueError:
                pid = -1
            if pid_alive(pid):
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    @contextlib.contextmanager
    def lease(self, owner: str = "session") -> Iterator[StackInfo]:
        """Use the stack for the duration of a block (e.g. a pytest session).

        Starts it if needed. When the last lease ends, the stack is stopped only if a
        lease started it (a stack brought up with ``up()``/the CLI keeps running).
        Safe across concurrent processes (file lock + lease files).
        """
        with self._locked():
            nothing_running = not self.kafka.running_pids() and self.postgres.pid() is None
            info = self._up_locked()
            if nothing_running:
                self._auto_marker.write_text(f"{os.getpid()} {owner}\n")
            self._leases_dir.mkdir(parents=True, exist_ok=True)
            lease = self._leases_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            lease.write_text(json.dumps({"owner": owner, "started": time.time()}) + "\n")
        try:
            yield info
        finally:
            with self._locked():
                lease.unlink(missing_ok=True)
                if self._auto_marker.exists() and not self._live_leases():
                    self._down_locked(purge=False, timeout=30.0)

    # -- fault-injection helpers

    def kill_kafka(self, node: int = 1, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to Kafka node ``node`` (default SIGKILL: crash it)."""
        self.kafka.kill_node(node, sig)

    def restart_kafka(self, node: int = 1, timeout: float | None = None) -> None:
        """Stop node ``node`` if it still runs, start it again, wait until ready (``timeout``,
        default the stack's start timeout)."""
        self.kafka.restart_node(node, timeout or self.ready_timeout)

    def kill_postgres(self, sig: int = signal.SIGKILL) -> None:
        self.postgres.kill(sig)

    def restart_postgres(self, timeout: float | None = None) -> None:
        """``pg_ctl stop -m fast`` (or clean up after a kill) and start again."""
        self.postgres.restart(timeout or self.ready_timeout)


def info_as_dict(info: StackInfo) -> dict[str, object]:
    data = asdict(info)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
