"""Run carebridge services as supervised child processes with prefixed log lines.

Used by `make run` and by the journey tests: each child gets its own process group, so a stop
(or a test's SIGKILL) reaches everything it started, and nothing outlives the supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from carebridge_contracts.services import SERVICE_DECLARATIONS, declared_service

SERVICE_PORTS: dict[str, int] = {service.name: service.port for service in SERVICE_DECLARATIONS}
COLOURS = ("36", "35", "33", "32", "34", "31")
SUPERVISOR_PREFIX = "supervisor: "  # the supervisor's own lines, never a service's

Echo = Callable[[str], None]


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    port: int | None = None
    withheld: tuple[str, ...] = ()
    """Variables of this environment the child does not inherit (others' passwords)."""


def service_spec(
    service: str, port: int, base_env: Mapping[str, str], extra_env: Mapping[str, str] | None = None
) -> ProcessSpec:
    env = {
        **base_env,
        "CAREBRIDGE_HTTP_HOST": "127.0.0.1",
        "CAREBRIDGE_HTTP_PORT": str(port),
        **(extra_env or {}),
    }
    return ProcessSpec(
        name=service,
        argv=[sys.executable, "-m", declared_service(service).package],
        env=env,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        port=port,
    )


def smtp_sink_spec(port: int, directory: Path) -> ProcessSpec:
    return ProcessSpec(
        name="smtp",
        argv=[sys.executable, "-m", "carebridge_devstack.smtp_sink", "--port", str(port),
              "--dir", str(directory)],
        port=port,
    )  # fmt: skip


def compact(line: str) -> str:
    """A JSON log line as `level msg key=value ...`; other lines unchanged."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    level = str(record.pop("level", "")).upper()[:4]
    msg = record.pop("msg", "")
    for noise in ("timestamp", "service", "logger"):
        record.pop(noise, None)
    fields = " ".join(f"{k}={v}" for k, v in record.items() if v is not None)
    return f"{level:<4} {msg} {fields}".rstrip()


class ManagedProcess:
    def __init__(self, spec: ProcessSpec, log_dir: Path, echo: Echo | None, colour: str) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self._echo = echo
        self._colour = colour
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.spec.env, "PYTHONUNBUFFERED": "1"}
        for name in self.spec.withheld:
            env.pop(name, None)
        self.process = subprocess.Popen(
            self.spec.argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        with self.log_path.open("ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                if self._echo is not None:
                    text = compact(raw.decode(errors="replace").rstrip())
                    self._echo(f"\x1b[{self._colour}m{self.spec.name:>12} |\x1b[0m {text}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.process.wait(timeout=10)

    def ready(self) -> bool:
        if not self.alive():
            return False
        if self.spec.ready_url is None:
            return _port_open(self.spec.port) if self.spec.port else True
        try:
            with urllib.request.urlopen(self.spec.ready_url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False


class ProcessGroup:
    """Starts, watches (optionally restarts) and stops a set of child processes."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        log_dir: Path,
        *,
        echo: Echo | None = None,
        restart_crashed: bool = False,
    ) -> None:
        self.processes = {
            spec.name: ManagedProcess(spec, log_dir, echo, COLOURS[i % len(COLOURS)])
            for i, spec in enumerate(specs)
        }
        self._restart_crashed = restart_crashed
        self._stopping = threading.Event()
        self._echo = echo
        self._watcher: threading.Thread | None = None

    def __getitem__(self, name: str) -> ManagedProcess:
        return self.processes[name]

    def start(self) -> None:
        for process in self.processes.values():
            process.start()
        if self._restart_crashed:
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()

    def wait_ready(
        self, timeout: float = 120.0, names: list[str] | None = None
    ) -> dict[str, float]:
        """Seconds until each process answered ready; raises with its log tail otherwise."""
        started = time.monotonic()
        pending = set(names or self.processes)
        ready_after: dict[str, float] = {}
        while pending:
            for name in sorted(pending):
                process = self.processes[name]
                if process.ready():
                    ready_after[name] = time.monotonic() - started
                    pending.discard(name)
                elif not process.alive() and not self._restart_crashed:
                    raise RuntimeError(f"{name} exited during start-up:\n{self.tail(name)}")
            if pending and time.monotonic() - started > timeout:
                tails = "\n".join(f"--- {n} ---\n{self.tail(n)}" for n in sorted(pending))
                raise TimeoutError(f"not ready after {timeout:.0f}s: {sorted(pending)}\n{tails}")
            time.sleep(0.3)
        return ready_after

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.processes[name].log_path
        if not path.exists():
            return "(no output)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.signal(sig)
        if process.process is not None:
            process.process.wait(timeout=30)

    def restart(self, name: str) -> None:
        process = self.processes[name]
        if process.alive():
            process.stop(timeout=30)
        process.start()

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for name, process in self.processes.items():
                if not process.alive() and not self._stopping.is_set():
                    code = process.process.returncode if process.process else None
                    if self._echo:
                        self._echo(f"{SUPERVISOR_PREFIX}{name} exited ({code}); restarting")
                    time.sleep(1.0)
                    if not self._stopping.is_set():
                        process.start()

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every process group, SIGKILL what is still there after `timeout`."""
        self._stopping.set()
        codes: dict[str, int | None] = {}
        for name, process in reversed(list(self.processes.items())):
            codes[name] = process.stop(timeout)
        return codes


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
