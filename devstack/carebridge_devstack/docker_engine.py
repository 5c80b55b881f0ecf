"""A Docker engine for ``make compose-test``: the one that answers, else a private ``dockerd``.

Resolution (``docker_engine``):

1. ``DOCKER_HOST`` is set, or the client's default engine answers ``docker info``: use it,
   leave it running.
2. Otherwise, on a root Linux machine: Debian's ``docker.io`` (installed with apt-get when
   ``dockerd`` is missing) runs as a daemon of its own — its own socket, pidfile, exec-root
   and data-root, ``--iptables=false --ip-masq=false`` so the host's firewall is untouched —
   and is stopped on exit. Nothing else on the machine sees it: ``/var/run/docker.sock`` stays
   absent, and ``DOCKER_HOST`` is set only in the environment handed to compose and the tests.

The data-root lives in the carebridge cache, so images built once stay for the next run. One
run at a time holds the engine (a lock file); a second waits for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ._util import DevstackError, file_lock, pid_alive, read_pid, tail, terminate
from .kafka_jars import cache_root

RUN_DIR_ENV = "CAREBRIDGE_DOCKER_RUN_DIR"
DATA_ROOT_ENV = "CAREBRIDGE_DOCKER_DATA_ROOT"
# Unix socket paths are limited to 108 bytes (containerd's lives under the exec-root): short.
DEFAULT_RUN_DIR = Path("/run/carebridge-docker")
START_TIMEOUT_S = 90.0
# The containers' parent cgroup and its CPU weight. Under cgroup v1 with autogroup, a cgroup
# competes for CPU as one entity against every session on the host: with the default weight
# (1024) a machine busy with other stacks leaves the whole compose project the share of one
# process (Kafka took minutes to start). 8192 gives it about the weight of the native stack's
# processes, which run as several sessions.
CGROUP_PARENT = "carebridge-docker"
CPU_SHARES_ENV = "CAREBRIDGE_DOCKER_CPU_SHARES"
DEFAULT_CPU_SHARES = 8192
CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")


@dataclass(frozen=True)
class DockerEngine:
    """An engine that answered: where it is (``host``; None = the client's default), its
    version, and whether this process started it (then it is stopped on exit)."""

    host: str | None
    version: str
    private: bool

    @property
    def env(self) -> dict[str, str]:
        """Variables that point the docker client (and testcontainers) at this engine."""
        return {"DOCKER_HOST": self.host} if self.host else {}


def docker_cli() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise DevstackError(
            "the docker command-line client is not installed",
            "apt-get install -y docker.io (client and engine), or install Docker's own packages",
        )
    return docker


def server_version(host: str | None, timeout: float = 10.0) -> str | None:
    """The engine's version if the engine at ``host`` answers ``docker info``, else None."""
    env = {**os.environ, **({"DOCKER_HOST": host} if host else {})}
    if not host:
        env.pop("DOCKER_HOST", None)
    try:
        out = subprocess.run(
            [docker_cli(), "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )  # fmt: skip
    except (subprocess.TimeoutExpired, OSError):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and version else None


class PrivateDaemon:
    """Debian's dockerd with every path of its own (see the module docstring)."""

    def __init__(self, console: Console, run_dir: Path | None = None) -> None:
        self.console = console
        self.run_dir = run_dir or Path(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)
        root = os.environ.get(DATA_ROOT_ENV)
        self.data_root = Path(root) if root else cache_root() / "docker" / "data-root"
        self.socket = self.run_dir / "docker.sock"
        self.pid_file = self.run_dir / "docker.pid"
        self.exec_root = self.run_dir / "exec"
        self.config_file = self.run_dir / "daemon.json"
        self.log_file = cache_root() / "docker" / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid is not None and pid_alive(pid) else None

    def command(self, dockerd: str) -> list[str]:
        return [
            dockerd,
            "--host", self.host,
            "--pidfile", str(self.pid_file),
            "--exec-root", str(self.exec_root),
            "--data-root", str(self.data_root),
            "--config-file", str(self.config_file),  # not /etc/docker/daemon.json
            "--iptables=false", "--ip-masq=false",
            "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", f"/{CGROUP_PARENT}",
        ]  # fmt: skip

    def weigh_cgroup(self) -> None:
        """Give the containers' parent cgroup its CPU weight (see CGROUP_PARENT), where the
        cgroup v1 cpu controller is mounted; elsewhere the kernel's defaults stay."""
        if not CPU_CGROUP_ROOT.is_dir():
            return
        shares = os.environ.get(CPU_SHARES_ENV) or str(DEFAULT_CPU_SHARES)
        group = CPU_CGROUP_ROOT / CGROUP_PARENT
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.shares").write_text(shares)
        except OSError as exc:
            self.console.print(f"[yellow]![/] could not set {group}/cpu.shares ({exc}); continuing")

    def start(self) -> str:
        """Start the daemon (installing Debian's engine first if needed); return its version.
        A daemon of ours left running by an interrupted run is reused."""
        if self.pid() is not None:
            version = server_version(self.host)
            if version:
                self.console.print(f"[green]✓[/] reusing the private Docker engine at {self.host}")
                return version
            self.stop()
        dockerd = ensure_debian_engine(self.console)
        for path in (self.run_dir, self.data_root, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps({}) + "\n")
        self.weigh_cgroup()
        self.socket.unlink(missing_ok=True)
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            subprocess.Popen(
                self.command(dockerd), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        with self.console.status(f"Starting a private Docker engine ({self.host})…"):
            deadline = started + START_TIMEOUT_S
            while time.monotonic() < deadline:
                version = server_version(self.host, timeout=5)
                if version:
                    self.console.print(
                        f"[green]✓[/] private Docker engine {version} ready in "
                        f"{time.monotonic() - started:.1f}s at {self.host} "
                        f"(data-root {self.data_root})"
                    )
                    return version
                time.sleep(0.5)
        self.stop()
        raise DevstackError(
            f"dockerd did not answer within {START_TIMEOUT_S:.0f}s. Last lines of "
            f"{self.log_file}:\n{tail(self.log_file, 25)}",
            "read the log above (a missing kernel feature such as overlayfs, or a busy "
            f"{self.run_dir}); or point DOCKER_HOST at a working engine and rerun",
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with self.console.status("Stopping the private Docker engine…"):
                # dockerd stops its containers and its containerd before it exits; SIGKILL
                # only if it has not after a minute
                terminate(pid, timeout=60.0, sig=signal.SIGTERM)
            self.console.print("[green]✓[/] private Docker engine stopped")
        self.socket.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        for group in CPU_CGROUP_ROOT.parent.glob(f"*/{CGROUP_PARENT}"):
            with contextlib.suppress(OSError):  # gone, or still holds a container: keep it
                group.rmdir()


def ensure_debian_engine(console: Console) -> str:
    """Path of ``dockerd``; installs Debian's docker.io when it is missing (root only)."""
    found = shutil.which("dockerd")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DevstackError(
            "no Docker engine answers and dockerd is not installed",
            "start a Docker engine (or set DOCKER_HOST to one); as root on Debian, "
            "`make compose-test` installs docker.io and runs a private daemon itself",
        )
    console.print(
        "==> installing Debian's Docker engine (apt-get install docker.io; first run only)"
    )
    # Without an init system's consent the package must not start the machine-wide daemon on
    # /var/run/docker.sock: policy-rc.d 101 ("action forbidden") for the install only.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io"]):
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise DevstackError(
                    f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stderr[-2000:]}",
                    "fix apt (sources, network), or install a Docker engine yourself and rerun",
                )
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    found = shutil.which("dockerd")
    if not found:
        raise DevstackError("docker.io installed but dockerd is not on PATH", "check PATH")
    return found


@contextlib.contextmanager
def docker_engine(console: Console) -> Iterator[DockerEngine]:
    """An answering engine for the duration of the block (see the module docstring)."""
    with file_lock(cache_root() / "docker" / "engine.lock", timeout=3600):
        given = os.environ.get("DOCKER_HOST") or None
        version = server_version(given)
        if version is not None:
            where = given or "the client's default engine"
            console.print(f"[green]✓[/] Docker engine {version} answers at {where}")
            yield DockerEngine(given, version, private=False)
            return
        if given:
            raise DevstackError(
                f"DOCKER_HOST={given} is set but no engine answers there",
                "start that engine, or unset DOCKER_HOST to let compose-test run its own",
            )
        daemon = PrivateDaemon(console)
        try:
            version = daemon.start()
            yield DockerEngine(daemon.host, version, private=True)
        finally:
            daemon.stop()
