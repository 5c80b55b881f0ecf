"""``make compose-test``: docker compose and the testcontainers path, run for real.

1. a Docker engine (``docker_engine``: the one that answers, else a private dockerd);
2. the compose plugin (built from its Go module when ``docker compose`` is missing);
3. images: the public ones where a registry answers, else local equivalents (ADR 0016);
   then the services' images from the Dockerfile;
4. ``containers/tests/test_compose_stack.py``: compose up --wait, the README journey, a SIGKILL,
   the observability profile, down -v;
5. the testcontainers path: ``CAREBRIDGE_DEVSTACK=docker`` for the shared runtime's
   integration tests and a journey test;
6. the private engine, if one was started, is stopped.

Every step prints its time; the summary lists them, with where the reports are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from ._util import DevstackError, find_repo_root
from .docker_engine import docker_engine
from .images import ImageName
from .local_images import (
    Docker,
    build_project_images,
    choose_images,
    ensure_compose_plugin,
    image_env,
)
from .signer import dev_signer

T = TypeVar("T")

# The testcontainers path runs these (relative to the repository) in one pytest session.
TESTCONTAINERS_TESTS = (
    "containers/tests/test_testcontainers_path.py",
    "shared/tests/integration",
    "tests/journey/test_patient_journey.py::test_assessment_booking_confirmation_and_reminders",
)
COMPOSE_TESTS = ("containers/tests/test_compose_stack.py",)
THIRD_PARTY: tuple[ImageName, ...] = ("python", "kafka", "postgres", "prometheus")
# Variables that would send the tests to another stack than the containers.
STACK_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CAREBRIDGE_DEVSTACK")


class Timings:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.steps: list[tuple[str, float, str]] = []

    def step(self, name: str, action: Callable[[], T]) -> T:
        self.console.rule(f"[bold]{name}")
        started = time.monotonic()
        outcome = "failed"
        try:
            result = action()
            outcome = "ok"
            return result
        finally:
            self.steps.append((name, time.monotonic() - started, outcome))

    def record(self, name: str, seconds: float, outcome: str) -> None:
        self.steps.append((name, seconds, outcome))

    def table(self) -> Table:
        table = Table(title="make compose-test")
        for column in ("step", "seconds", "result"):
            table.add_column(column)
        for name, seconds, outcome in self.steps:
            table.add_row(name, f"{seconds:.1f}", outcome)
        table.add_row("total", f"{sum(s for _, s, _ in self.steps):.1f}", "")
        return table


def run_pytest(
    console: Console, paths: tuple[str, ...], env: dict[str, str], extra: list[str]
) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "-p",
        "no:cacheprovider",
        "--timeout",
        "900",
        *extra,
    ]
    console.print(f"$ {' '.join(cmd[1:])}", highlight=False)
    return subprocess.run(cmd, env=env, cwd=find_repo_root(), check=False).returncode


def compose_test(
    console: Console,
    *,
    compose: bool = True,
    testcontainers: bool = True,
    pytest_args: list[str] | None = None,
    report_dir: Path | None = None,
) -> int:
    """Run the steps above; the exit status is non-zero if any test or step failed."""
    timings = Timings(console)
    report = report_dir or find_repo_root() / ".compose-test"
    report.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    extra = list(pytest_args or [])
    chosen: dict[ImageName, str] = {}
    started = time.monotonic()
    try:
        with docker_engine(console) as engine:
            timings.record("engine", time.monotonic() - started, "ok")
            docker = Docker(console, engine.env)
            timings.step("compose plugin", lambda: ensure_compose_plugin(docker))
            chosen |= timings.step("third-party images", lambda: choose_images(docker, THIRD_PARTY))
            timings.step("service images", lambda: build_project_images(docker, chosen["python"]))
            env = _tests_env(engine.env, chosen, report)
            if compose:
                rc = timings.step(
                    "docker compose tests", lambda: run_pytest(console, COMPOSE_TESTS, env, extra)
                )
                if rc != 0:
                    failures.append(f"docker compose tests (pytest exit {rc})")
            if testcontainers:
                tc_env = env | TESTCONTAINERS_ENV
                rc = timings.step(
                    "testcontainers path",
                    lambda: run_pytest(console, TESTCONTAINERS_TESTS, tc_env, extra),
                )
                if rc != 0:
                    failures.append(f"testcontainers path (pytest exit {rc})")
            engine_stop = time.monotonic()
        if engine.private:
            timings.record("engine stop", time.monotonic() - engine_stop, "ok")
    except DevstackError as exc:
        failures.append(str(exc))
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return _report(console, timings, report, chosen, failures)


TESTCONTAINERS_ENV = {
    "CAREBRIDGE_DEVSTACK": "docker",
    # no registry for testcontainers/ryuk here: the fixtures remove their
    # containers themselves (context managers); see endpoints
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    # testcontainers believes it runs in a container on these machines and
    # would answer with the bridge gateway: the published ports are on loopback
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
}


def _tests_env(
    engine_env: Mapping[str, str], chosen: Mapping[ImageName, str], report: Path
) -> dict[str, str]:
    """This environment without the local stack's variables, plus the engine, the images
    chosen, the dev signing key the services trust and where the tests write their report."""
    env = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
    env |= dict(engine_env) | image_env(chosen)
    env |= {
        "CAREBRIDGE_AUTH_PUBLIC_KEYS": dev_signer().public_pem,
        "CAREBRIDGE_COMPOSE_REPORT_DIR": str(report),
    }
    return env


def _report(
    console: Console,
    timings: Timings,
    report: Path,
    chosen: Mapping[ImageName, str],
    failures: list[str],
) -> int:
    """The timings, where the journey's timeline is, the images used; 1 if anything failed."""
    console.print(timings.table())
    journey = report / "journey.txt"
    if journey.is_file():
        console.print(f"journey and event timeline from the containers: {journey}")
    for variable, image in image_env(chosen).items():
        console.print(f"  {variable}={image}", highlight=False)
    if failures:
        console.print("[bold red]compose-test failed:[/] " + "; ".join(failures), highlight=False)
        return 1
    console.print("[green]compose-test passed[/]")
    return 0


def prepare_compose(console: Console) -> dict[str, str]:
    """What `docker compose up` needs, for a person at a shell: an engine (a private one is
    left running: ``python -m carebridge_devstack docker-down`` stops it), the plugin, the
    images; returns the variables to export (DOCKER_HOST, image overrides, the dev key)."""
    from .docker_engine import PrivateDaemon, server_version

    given = os.environ.get("DOCKER_HOST") or None
    engine_env: dict[str, str] = {}
    if server_version(given) is None:
        if given:
            raise DevstackError(f"no engine answers at DOCKER_HOST={given}", "start it or unset it")
        daemon = PrivateDaemon(console)
        daemon.start()
        engine_env = {"DOCKER_HOST": daemon.host}
    docker = Docker(console, engine_env)
    ensure_compose_plugin(docker)
    chosen = choose_images(docker, THIRD_PARTY)
    build_project_images(docker, chosen["python"])
    return engine_env | image_env(chosen) | {"CAREBRIDGE_AUTH_PUBLIC_KEYS": dev_signer().public_pem}
