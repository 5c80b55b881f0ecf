"""``python -m carebridge_bench run|report`` (``make bench``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from carebridge_bench import report
from carebridge_bench.config import BenchConfig
from carebridge_devstack._util import DevstackError, find_repo_root

app = typer.Typer(
    help="carebridge benchmark: a raw-Kafka baseline against one carebridge stage, open-loop "
    "patient journeys (latency per stage), memory and start-up, on a private stack.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
SHARED_PORTS = {29092, 29093, 25432}


@app.command()
def run(
    quick: Annotated[
        bool, typer.Option(help="About 1-2 minutes: small backlog, 3 short steps")
    ] = False,
    rates: Annotated[
        str | None,
        typer.Option(help="Offered journeys/s, comma-separated [10,25,50,75,100,150,200]"),
    ] = None,
    step_seconds: Annotated[
        float | None, typer.Option(help="Seconds each rate is held [60]")
    ] = None,
    messages: Annotated[int | None, typer.Option(help="Backlog of the stage run [20000]")] = None,
    baseline_messages: Annotated[
        int | None, typer.Option(help="Backlog of the baseline run [100000]")
    ] = None,
    throughput: Annotated[bool, typer.Option("--throughput/--no-throughput")] = True,
    journeys: Annotated[bool, typer.Option("--journeys/--no-journeys")] = True,
    stack_dir: Annotated[
        Path | None, typer.Option(help="Private stack [<repo>/.stack-bench]")
    ] = None,
    kafka_port: Annotated[int, typer.Option(help="Kafka port (controller: +1)")] = 29292,
    pg_port: Annotated[int, typer.Option(help="PostgreSQL port")] = 25632,
    results_dir: Annotated[Path | None, typer.Option(help="[<repo>/bench/results]")] = None,
) -> None:
    """Start a fresh private stack, measure everything, stop it; table, JSON and PNG out."""
    if {kafka_port, kafka_port + 1, pg_port} & SHARED_PORTS:
        raise typer.BadParameter("those are the shared dev stack's ports; the bench needs its own")
    config = BenchConfig.quick_preset() if quick else BenchConfig()
    if rates:
        try:
            config.rates = [float(r) for r in rates.split(",") if r.strip()]
        except ValueError:
            raise typer.BadParameter(
                f"--rates wants numbers like 10,25,50, not {rates!r}"
            ) from None
    if step_seconds is not None:
        config.step_seconds = step_seconds
    config.messages = messages or config.messages
    config.baseline_messages = baseline_messages or config.baseline_messages
    config.throughput, config.journeys = throughput, journeys
    config.stack_dir, config.results_dir = stack_dir, results_dir
    config.kafka_port, config.pg_port = kafka_port, pg_port
    from carebridge_bench.run import run_bench

    try:
        run_bench(config, Console(width=140))
    except DevstackError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=1) from None


@app.command("report")
def show(
    results: Annotated[Path, typer.Argument(help="A run's JSON")] = Path(
        "bench/results/latest.json"
    ),
    write_readme: Annotated[
        bool,
        typer.Option(help="Put the table between the bench-table markers of docs/performance.md"),
    ] = False,
    png: Annotated[Path | None, typer.Option(help="Also draw the latency plot here")] = None,
) -> None:
    """Print an earlier run's tables again (and optionally update the README or the plot)."""
    if not results.is_file():
        err.print(f"[bold red]error:[/] no results at {results}; run `make bench` first")
        raise typer.Exit(code=1)
    data: report.Report = json.loads(results.read_text())
    report.print_report(Console(width=140), data)
    if png is not None and report.plot(data, png):
        err.print(f"plot: {png}")
    if write_readme:
        readme = find_repo_root() / "docs" / "performance.md"
        if not report.write_readme(readme, data):
            err.print(f"[bold red]error:[/] {readme} has no {report.README_START} markers")
            raise typer.Exit(code=1)
        err.print(f"updated the figures table in {readme}")


def main() -> None:
    app()
