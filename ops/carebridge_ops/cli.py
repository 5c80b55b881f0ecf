"""`carebridge`: one typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

from carebridge_ops import dlq, events, kafka_cli, offsets, projection, replay, status
from carebridge_ops.catalog import cli as catalog
from carebridge_ops.hints import program
from carebridge_ops.local_stack import adopt_local_stack

app = typer.Typer(
    help="Operate carebridge: tail events, replay, dead letters, offsets, projections, status, "
    "Kafka principals and ACLs. Without KAFKA_BOOTSTRAP_SERVERS it uses the local stack "
    "(`make stack-up`, `make run`): its brokers, database and admin login from .stack/stack.env.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.command("replay")(replay.replay_command)
app.add_typer(offsets.app, name="offsets")
app.add_typer(projection.app, name="projection")
app.add_typer(catalog.app, name="catalog")
app.add_typer(kafka_cli.app, name="kafka")
app.command("status")(status.status_command)


def main() -> None:
    adopt_local_stack()  # before typer reads the options' environment variables
    app(prog_name=program("carebridge"))  # its usage errors print `Try '<this> --help'`
