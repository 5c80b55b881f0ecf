"""`carebridge`: one typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Operate carebridge: tail events, replay, dead letters, offsets, projections, status.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    app()
