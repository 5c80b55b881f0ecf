"""`make run`: the stack, the SMTP sink and the four services, a demo patient, then wait."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from ._util import DevstackError
from .demo import CareClient, walk_demo_patient
from .endpoints import StackEndpoints
from .stack import Stack, default_stack_dir
from .system import SERVICES, LocalSystem


def run(*, demo: bool = True, exit_after_demo: bool = False, stop_stack: bool = True) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped output: keep the timeline table readable
    printer_lock = threading.Lock()

    def echo(line: str) -> None:
        with printer_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    stack = Stack(console=Console(stderr=True))
    console.rule("starting Kafka and PostgreSQL")
    try:
        info = stack.up()
    except DevstackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    console.print(
        f"stack ready in {info.total_s:.1f}s: {info.kafka_bootstrap}, {info.database_url}"
    )
    endpoints = StackEndpoints(info.kafka_bootstrap, info.database_url, "native")
    system = LocalSystem(
        endpoints,
        default_stack_dir() / "run",
        echo=echo,
        supervise=True,
        # the demo completes the first visit straight away instead of waiting for it
        extra_env={"booking": {"CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START": "true"}},
    )

    stopping = threading.Event()

    def request_stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    code = 0
    try:
        console.rule("starting the SMTP sink and the four services")
        ready = system.start()
        for name in SERVICES:
            console.print(f"  {name:<13} {system.url(name)}  ready in {ready[name]:.1f}s")
        console.print(
            f"  {'smtp sink':<13} 127.0.0.1:{system.ports.smtp}  mail in {system.mail_dir}"
        )
        if demo:
            client = CareClient({name: system.url(name) for name in SERVICES})
            walk_demo_patient(client, system.mailbox, info.kafka_bootstrap, console)
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


def logs_dir() -> Path:
    return default_stack_dir() / "run" / "logs"
