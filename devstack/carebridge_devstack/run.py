"""`make run`: the stack, the SMTP sink and the four services, a demo patient, then wait."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from rich.console import Console

from carebridge_contracts.services import SERVICES
from carebridge_devstack.signer import dev_signer
from carebridge_ops.hints import carebridge, devstack
from carebridge_shared.auth import Role
from carebridge_shared.kafka import env_security

from ._util import DevstackError, run_async
from .demo import CareClient, DemoCast, walk_demo_patient
from .kafka_auth import adopt_stack_login
from .kafka_ready import wait_for_group_coordinator
from .processes import SUPERVISOR_PREFIX
from .stack import Stack, StackInfo, default_stack_dir
from .system import LocalSystem


def run(
    *,
    demo: bool = True,
    exit_after_demo: bool = False,
    stop_stack: bool = True,
    service_logs: bool = False,
) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: keep the timeline table readable
    stack = Stack(console=Console(stderr=True))
    info = _start_stack(console, stack)
    if info is None:
        return 1
    system = LocalSystem(
        info.endpoints,
        default_stack_dir() / "run",
        echo=_terminal_echo(service_logs),
        supervise=True,
        # the demo completes the first visit straight away instead of waiting for it
        extra_env={"booking": {"CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START": "true"}},
    )
    stopping = _stop_requested_by_signals()
    code = 0
    try:
        start_services(console, system, service_logs=service_logs)
        cast = None
        if demo:
            client = CareClient({name: system.url(name) for name in SERVICES})
            cast = walk_demo_patient(client, system.mailbox, info.kafka_bootstrap, console)
        print_demo_tokens(console, cast, system.url("booking"))
        print_what_to_look_at(console, system)
        if not exit_after_demo:
            console.rule("running: Ctrl-C stops everything")
            while not stopping.is_set():
                time.sleep(0.5)
    except Exception as exc:
        console.print(f"[red]error:[/] {exc}")
        console.print(f"service logs are in {system.log_dir}")
        code = 1
    finally:
        console.rule("stopping")
        codes = system.stop()
        console.print("services stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        if stop_stack:
            stack.down()
            console.print("Kafka and PostgreSQL stopped")
    return code


def _start_stack(console: Console, stack: Stack) -> StackInfo | None:
    """Kafka and PostgreSQL up, the admin's login adopted and a group coordinator ready; None
    (the error printed) when the stack does not start."""
    console.rule("starting Kafka and PostgreSQL")
    try:
        info = stack.up()
    except DevstackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return None
    console.print(
        f"stack ready in {info.total_s:.1f}s: {info.kafka_bootstrap}, {info.database_url}"
    )
    adopt_stack_login(info.kafka_env)  # the demo's timeline reads topics as the admin
    # A fresh Kafka makes its consumer-offsets topic when a group first asks; asking now keeps
    # GroupCoordinatorNotAvailableError out of the services' first seconds.
    run_async(lambda: wait_for_group_coordinator(info.kafka_bootstrap, env_security(), 60.0))
    return info


def _terminal_echo(service_logs: bool) -> Callable[[str], None]:
    """What the supervisor calls with each line of the services' output."""
    printer_lock = threading.Lock()

    def echo(line: str) -> None:
        # Service log lines go to their files (.stack/run/logs); the terminal shows the steps,
        # and the supervisor's own notices (a crashed service restarted) always.
        if not service_logs and not line.startswith(SUPERVISOR_PREFIX):
            return
        with printer_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return echo


def _stop_requested_by_signals() -> threading.Event:
    """An event that SIGINT (Ctrl-C) or SIGTERM sets."""
    stopping = threading.Event()

    def request_stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stopping


def start_services(console: Console, system: LocalSystem, *, service_logs: bool) -> None:
    """The SMTP sink and the services, each deployed first; prints where each one is."""
    console.rule(f"starting the SMTP sink and the {len(SERVICES)} services")
    system.log_dir.mkdir(parents=True, exist_ok=True)
    with (system.log_dir / DEPLOY_LOG).open("a") as deploy_log:
        # the services' deploy step (roles, migrations) runs in this process: its log lines go
        # beside the services' logs, not between the demo's steps
        structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=deploy_log))
        try:
            ready = system.start()
        finally:
            structlog.reset_defaults()
    for name in SERVICES:
        console.print(f"  {name:<13} {system.url(name)}  ready in {ready[name]:.1f}s")
    console.print(f"  {'smtp sink':<13} 127.0.0.1:{system.ports.smtp}  mail in {system.mail_dir}")
    console.print(
        f"  service logs: {system.log_dir}/<service>.log (JSON lines)"
        + ("" if service_logs else "; --service-logs shows them here too"),
        highlight=False,
    )


DEMO_TOKEN_HOURS = 12
DEMO_PATIENT_VARIABLE = "DEMO_PATIENT_ID"
DEPLOY_LOG = "deploy.log"


def demo_principals(cast: DemoCast | None) -> list[tuple[str, Role, str]]:
    """(variable, role, sub) of the printed tokens: the demo's people, a coordinator and ops."""
    people: list[tuple[str, Role, str]] = []
    if cast is not None:
        people += [
            ("PATIENT_TOKEN", "patient", cast.patient_id),
            ("PSYCHIATRIST_TOKEN", "clinician", cast.psychiatrist_id),
            ("THERAPIST_TOKEN", "clinician", cast.therapist_id),
        ]
    return [*people, ("COORDINATOR_TOKEN", "coordinator", "coord-1"), ("OPS_TOKEN", "ops", "ops-1")]


def print_demo_tokens(console: Console, cast: DemoCast | None, booking_url: str) -> None:
    """Bearer tokens to try the APIs by hand (dev key; valid for DEMO_TOKEN_HOURS hours), as
    shell lines that copy whole."""
    console.rule(f"demo tokens (dev signing key, valid {DEMO_TOKEN_HOURS} h)")
    signer = dev_signer()
    for variable, role, sub in demo_principals(cast):
        token = signer.token(role, sub, ttl_seconds=DEMO_TOKEN_HOURS * 3600)
        console.print(f"# {role} {sub}", highlight=False)
        console.print(f"export {variable}={token}", highlight=False, soft_wrap=True)
    if cast is not None:
        console.print(f"export {DEMO_PATIENT_VARIABLE}={cast.patient_id}", highlight=False)
        console.print(
            'try: curl -H "Authorization: Bearer $PATIENT_TOKEN" '
            f'"{booking_url}/v1/appointments?patient_id=${DEMO_PATIENT_VARIABLE}"',
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"more: {devstack('token ROLE SUB')}  (patient, clinician, coordinator, ops)",
        highlight=False,
        soft_wrap=True,
    )


def print_what_to_look_at(console: Console, system: LocalSystem) -> None:
    """Where the demo left its traces, and each service's interactive API page."""
    console.rule("what to look at")
    console.print(f"mail the services sent: {system.mail_dir} (one .eml file per message)")
    console.print(f"service logs: {system.log_dir}")
    for name in SERVICES:
        console.print(f"{name} API (try it with a token above): {system.url(name)}/docs")
    console.print(f"events as they flow: {carebridge('events tail --from -15m')}")
    console.print(f"the services' health: {carebridge('status')}")


def logs_dir() -> Path:
    return default_stack_dir() / "run" / "logs"
