"""What the tail, replay, offsets and projection commands share: connection options read from
the services' environment variables, quiet library logs, one-line errors, progress bars.

Exit status: 0 done, 1 a comparison found differences, 2 an expected error (the message says
what to do next), like diff(1).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import structlog
import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

EXIT_DIFFERENT = 1
EXIT_ERROR = 2


class OpsError(Exception):
    """An expected problem; its message tells the operator what to do next."""


Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        show_envvar=True,
        help="Kafka bootstrap servers, comma-separated (as the services read them).",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="PostgreSQL DSN of the services' database (a role that may create schemas).",
    ),
]

_STACK_HINT = (
    "without it the command uses the local stack, and none is running here: start it with "
    "`make stack-up`"
)


def bootstrap_servers(value: str | None) -> str:
    if not value or not value.strip():
        raise OpsError(
            f"KAFKA_BOOTSTRAP_SERVERS is not set ({_STACK_HINT}). Export it "
            "or pass --bootstrap host:port."
        )
    return value.strip()


def database_url(value: str | None) -> str:
    if not value or not value.strip():
        raise OpsError(
            f"DATABASE_URL is not set ({_STACK_HINT}). Export it "
            "or pass --database-url postgresql://user@host:port/database."
        )
    return value.strip()


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped or captured output keeps whole topic names instead of the 80 columns rich assumes.
    width = None if stream.isatty() else 160
    # soft_wrap: messages stay whole lines (the terminal wraps them), so names never split.
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=True)


def out() -> Console:
    return _console(stderr=False)


def err() -> Console:
    return _console(stderr=True)


def fail(message: str) -> NoReturn:
    err().print(f"[bold red]error:[/] {message}")
    raise typer.Exit(EXIT_ERROR)


def quiet_logs() -> None:
    """Library and handler logs stay off stdout (tables, JSON lines): warnings only, as JSON
    on stderr; aiokafka's connection chatter is silenced (errors become one line instead)."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run async work; expected failures become one red line and exit status 2."""
    try:
        return asyncio.run(work)
    except OpsError as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(
            f"Kafka failed: {type(exc).__name__} ({exc}). Check that the broker is up and "
            "KAFKA_BOOTSTRAP_SERVERS points at it, then run the command again."
        )
    except asyncpg.PostgresError as exc:
        fail(
            f"PostgreSQL refused: {type(exc).__name__} ({exc}). Check that DATABASE_URL names a "
            "role that may read the services' schemas and create schemas, then run it again."
        )
    except BrokenPipeError:
        raise
    except OSError as exc:
        fail(
            f"could not connect: {exc}. Check that Kafka and PostgreSQL are up and that "
            "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL point at them."
        )


def progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or err(),
        transient=False,
    )


def confirm(question: str, *, yes: bool) -> None:
    """Ask before changing anything; --yes answers for scripts (a script without it stops)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise OpsError(f"{question} Not asked: stdin is not a terminal; pass --yes to proceed.")
    if not typer.confirm(question, default=False):
        raise OpsError("cancelled; nothing was changed.")
