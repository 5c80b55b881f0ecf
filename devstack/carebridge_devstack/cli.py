"""``.venv/bin/python -m carebridge_devstack up|down|status|env`` — the native local stack."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from carebridge_ops.hints import devstack

from ._util import DevstackError
from .stack import READY_TIMEOUT_S, Stack, info_as_dict

app = typer.Typer(
    help="Native local stack for carebridge: real Apache Kafka (KRaft) and PostgreSQL as "
    "plain processes, no Docker needed.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

StackDirOpt = Annotated[
    Path | None,
    typer.Option("--stack-dir", help="Stack directory [env CAREBRIDGE_STACK_DIR; <repo>/.stack]"),
]


def _fail(exc: DevstackError) -> typer.Exit:
    message = str(exc)
    if exc.hint:
        message = message.removesuffix(f"\nNext step: {exc.hint}")
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    if exc.hint:
        err.print(f"[bold yellow]next step:[/] {exc.hint}", highlight=False)
    return typer.Exit(code=1)


@app.command()
def up(
    stack_dir: StackDirOpt = None,
    nodes: Annotated[
        int | None,
        typer.Option(help="Kafka nodes (broker+controller each) [env CAREBRIDGE_KAFKA_NODES; 1]"),
    ] = None,
    fsync: Annotated[
        bool | None, typer.Option("--fsync/--no-fsync", help="PostgreSQL fsync [on]")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness")] = READY_TIMEOUT_S,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
) -> None:
    """Start Kafka and PostgreSQL (or reuse them if already running) and wait until ready."""
    stack = Stack(stack_dir, kafka_nodes=nodes, pg_fsync=fsync, ready_timeout=timeout, console=err)
    try:
        with err.status("Starting Kafka and PostgreSQL…"):
            info = stack.up()
    except DevstackError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps(info_as_dict(info)))
        return

    def how(reused: bool, seconds: float) -> str:
        return "already running" if reused else f"ready in {seconds:.1f}s"

    kafka_state = how(info.kafka_reused, info.kafka_ready_s)
    pg_state = how(info.postgres_reused, info.postgres_ready_s)
    err.print(f"[green]✓[/] Kafka       {kafka_state:<16} {info.kafka_bootstrap}", highlight=False)
    err.print(f"[green]✓[/] PostgreSQL  {pg_state:<16} {info.database_url}", highlight=False)
    err.print(f"  total {info.total_s:.1f}s; environment in {info.env_file}", highlight=False)
    err.print(f'  use it:  eval "$({devstack("env")})"', highlight=False)


@app.command()
def down(
    stack_dir: StackDirOpt = None,
    purge: Annotated[bool, typer.Option(help="Also delete all Kafka and PostgreSQL data")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds before Kafka is SIGKILLed")] = 30.0,
) -> None:
    """Stop Kafka and PostgreSQL cleanly (idempotent)."""
    stack = Stack(stack_dir, console=err)
    leases = stack.status(probe=False).leases
    if leases:
        err.print(f"[yellow]warning:[/] {len(leases)} test session(s) still use this stack")
    try:
        with err.status("Stopping…"):
            clean = stack.down(purge=purge, timeout=timeout)
    except DevstackError as exc:
        raise _fail(exc) from None
    suffix = " and data deleted" if purge else ""
    if clean:
        err.print(f"[green]✓[/] stack stopped{suffix}")
    else:
        err.print(f"[yellow]stack stopped{suffix}, but something had to be killed[/]")


@app.command()
def status(
    stack_dir: StackDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON")] = False,
) -> None:
    """Show whether Kafka and PostgreSQL run and answer. Exit 1 if not all healthy."""
    stack = Stack(stack_dir)
    st = stack.status()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "stack_dir": str(st.stack_dir),
                    "healthy": st.healthy,
                    "components": [
                        {
                            "name": c.name,
                            "running": c.running,
                            "healthy": c.healthy,
                            "pids": c.pids,
                            "endpoint": c.endpoint,
                            "log": str(c.log),
                        }
                        for c in st.components
                    ],
                    "leases": st.leases,
                }
            )
        )
    else:
        table = Table(title=f"carebridge stack in {st.stack_dir}")
        for column in ("component", "state", "pids", "endpoint", "log"):
            table.add_column(column, overflow="fold")
        for c in st.components:
            state = (
                "[green]healthy[/]" if c.healthy
                else "[yellow]running, not answering[/]" if c.running
                else "[dim]stopped[/]"
            )  # fmt: skip
            table.add_row(c.name, state, " ".join(map(str, c.pids)), c.endpoint, str(c.log))
        out.print(table)
        if st.leases:
            out.print(f"in use by {len(st.leases)} test session(s)")
        if not st.running:
            out.print(f"start it with: {devstack('up')}")
    raise typer.Exit(code=0 if st.healthy else 1)


@app.command()
def env(
    stack_dir: StackDirOpt = None,
    export: Annotated[
        bool, typer.Option("--export/--plain", help="Prefix lines with export")
    ] = True,
) -> None:
    """Print the environment for the stack: eval "$(.venv/bin/python -m carebridge_devstack env)"."""
    stack = Stack(stack_dir)
    if not stack.status(probe=False).running:
        err.print("[yellow]warning:[/] the stack is not running; start it with "
                  f"`{devstack('up')}`")  # fmt: skip
    prefix = "export " if export else ""
    for key, value in stack.env().items():
        out.print(f"{prefix}{key}={shlex.quote(value)}", highlight=False, soft_wrap=True)


@app.command(name="run")
def run_system(
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Walk a demo patient")] = True,
    exit_after_demo: Annotated[
        bool, typer.Option(help="Stop everything after the demo instead of waiting for Ctrl-C")
    ] = False,
    keep_stack: Annotated[
        bool, typer.Option(help="Leave Kafka and PostgreSQL running when stopping")
    ] = False,
    service_logs: Annotated[
        bool,
        typer.Option(help="Also print the services' log lines here (always in .stack/run/logs)"),
    ] = False,
) -> None:
    """Stack + SMTP sink + the four services (supervised, logs in files) + a demo patient."""
    from .run import run

    raise typer.Exit(
        run(
            demo=demo,
            exit_after_demo=exit_after_demo,
            stop_stack=not keep_stack,
            service_logs=service_logs,
        )
    )


@app.command()
def chaos(
    journeys: Annotated[int, typer.Option(help="Patient journeys to drive")] = 2000,
    kafka_nodes: Annotated[
        int,
        typer.Option(
            help="1: single broker (crashed and restarted); 3: KRaft cluster, "
            "RF 3, min.insync 2, one broker SIGKILLed under load"
        ),
    ] = 1,
    replicas: Annotated[int, typer.Option(help="Replicas of each consuming service")] = 2,
    kills_per_service: Annotated[int, typer.Option(help="SIGKILLs per service")] = 3,
    concurrency: Annotated[int, typer.Option(help="Journeys in flight at most")] = 12,
    window: Annotated[
        float | None, typer.Option(help="Seconds over which journeys start [0.3 s each]")
    ] = None,
    kafka_fault: Annotated[bool, typer.Option("--kafka-fault/--no-kafka-fault")] = True,
    postgres_fault: Annotated[
        list[str] | None,
        typer.Option(help="PostgreSQL faults: postgres-restart, postgres-crash [both]"),
    ] = None,
    no_postgres_fault: Annotated[bool, typer.Option(help="No PostgreSQL fault")] = False,
    poison: Annotated[bool, typer.Option("--poison/--no-poison")] = True,
    seed: Annotated[int | None, typer.Option(help="Random seed of faults and load")] = None,
    stack_dir: Annotated[
        Path | None, typer.Option(help="Private stack directory [<repo>/.stack-chaos]")
    ] = None,
    kafka_port: Annotated[int, typer.Option(help="First Kafka port of the private stack")] = 28092,
    pg_port: Annotated[int, typer.Option(help="PostgreSQL port of the private stack")] = 24432,
    results: Annotated[
        Path | None, typer.Option(help="JSON results [<stack-dir>/chaos-results.json]")
    ] = None,
) -> None:
    """Fault suite: load through the HTTP APIs while services, Kafka and PostgreSQL are
    killed and poison is injected; then an oracle checks nothing was lost or done twice."""
    from .chaos import ChaosConfig, run_chaos

    if kafka_port in (29092, 29093) or pg_port == 25432:
        raise typer.BadParameter("those are the shared dev stack's ports; chaos needs its own")
    config = ChaosConfig(
        journeys=journeys, kafka_nodes=kafka_nodes, replicas=replicas,
        kills_per_service=kills_per_service, concurrency=concurrency, window_s=window,
        kafka_fault=kafka_fault, poison=poison, seed=seed,
        stack_dir=stack_dir, kafka_port=kafka_port, pg_port=pg_port, results=results,
    )  # fmt: skip
    if no_postgres_fault:
        config.postgres_faults = ()
    elif postgres_fault:
        unknown = set(postgres_fault) - {"postgres-restart", "postgres-crash"}
        if unknown:
            raise typer.BadParameter(f"unknown PostgreSQL fault(s): {sorted(unknown)}")
        config.postgres_faults = tuple(postgres_fault)
    try:
        result = run_chaos(config, Console(width=120))
    except DevstackError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code=0 if result.ok else 1)


@app.command()
def token(
    role: Annotated[str, typer.Argument(help="patient, clinician, coordinator or ops")] = "ops",
    sub: Annotated[str | None, typer.Argument(help="Patient or clinician id [dev-<role>]")] = None,
    hours: Annotated[float, typer.Option(help="Lifetime of the token")] = 12.0,
    public_key: Annotated[
        bool, typer.Option("--public-key", help="Print the dev public key (PEM) instead")
    ] = False,
) -> None:
    """Print a dev bearer token signed with this machine's dev key (services started by the dev
    stack trust it), or with --public-key the key to give CAREBRIDGE_AUTH_PUBLIC_KEYS."""
    from carebridge_devstack.signer import dev_signer
    from carebridge_shared.auth import ROLES

    signer = dev_signer()
    if public_key:
        out.print(signer.public_pem, highlight=False, end="")
        return
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="ROLE")
    subject = sub or f"dev-{role}"
    out.print(
        signer.token(role, subject, ttl_seconds=hours * 3600),
        highlight=False,
        soft_wrap=True,
    )


@app.command(
    name="compose-test", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def compose_test_command(
    ctx: typer.Context,
    compose: Annotated[
        bool, typer.Option("--compose/--no-compose", help="docker compose tests")
    ] = True,
    testcontainers: Annotated[
        bool, typer.Option("--testcontainers/--no-testcontainers", help="testcontainers path")
    ] = True,
) -> None:
    """docker compose and the testcontainers path, run for real on a Docker engine (the one
    that answers, else a private one it starts and stops); extra arguments go to pytest."""
    from .compose_test import compose_test

    code = compose_test(err, compose=compose, testcontainers=testcontainers, pytest_args=ctx.args)
    raise typer.Exit(code)


@app.command(name="docker-up")
def docker_up() -> None:
    """Engine, compose plugin and every image docker-compose.yml needs (built locally where no
    registry answers); leaves a private engine running and prints the variables to export."""
    from .compose_test import prepare_compose

    try:
        variables = prepare_compose(err)
    except DevstackError as exc:
        raise _fail(exc) from None
    for key, value in variables.items():
        out.print(f"export {key}={shlex.quote(value)}", highlight=False, soft_wrap=True)
    err.print(
        f'use it:  eval "$({devstack("docker-up")})"; docker compose up --wait', highlight=False
    )


@app.command(name="docker-down")
def docker_down() -> None:
    """Stop the private Docker engine `docker-up` left running (its images stay cached)."""
    from .docker_engine import PrivateDaemon

    PrivateDaemon(err).stop()


@app.command()
def sizes(
    areas: Annotated[
        list[str] | None,
        typer.Argument(help="Directories or files, from the repository root [the source areas]"),
    ] = None,
    top: Annotated[int, typer.Option(help="How many of each kind; 0 for all")] = 10,
    over: Annotated[int, typer.Option(help="Only those longer than this many lines")] = 0,
    kind: Annotated[
        list[str] | None, typer.Option(help="module, class or function [all three]")
    ] = None,
    tests: Annotated[bool, typer.Option("--tests", help="Measure test files too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON")] = False,
) -> None:
    """The largest modules, classes and functions of the tree (lines, measured with ast), to
    compare a refactoring's before and after: `sizes --kind function --over 60 devstack ops`."""
    from carebridge_ops.local_stack import repo_root

    from .sizes import SOURCE_AREAS, Kind, largest, measure_tree, render

    try:
        kinds = [Kind(name) for name in kind] if kind else list(Kind)
    except ValueError:
        raise typer.BadParameter("use module, class or function", param_hint="--kind") from None
    root = repo_root()
    measured = measure_tree(root, areas or SOURCE_AREAS, with_tests=tests)
    if as_json:
        entries = [s.as_dict() for k in kinds for s in largest(measured, k, top=top, over=over)]
        out.print_json(json.dumps(entries))
        return
    report = render(measured, kinds, top=top, over=over)
    out.print(report or f"nothing over {over} lines", highlight=False, soft_wrap=True)


def main() -> None:
    app(prog_name=devstack("").rstrip())  # its usage errors print `Try '<this> --help'`


if __name__ == "__main__":
    main()
