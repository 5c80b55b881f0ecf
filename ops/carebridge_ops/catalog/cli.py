"""`carebridge catalog`: write, check, serve and photograph the event catalog."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from carebridge_ops.catalog import CATALOG_DIR, PAGE_FILE, SCREENSHOT_FILE

# Generating imports FastStream and all four services: that happens inside the commands, so
# `carebridge --help` stays quick.

app = typer.Typer(
    help="The event catalog: one AsyncAPI document and web page generated from the code.",
    no_args_is_help=True,
)
console = Console(stderr=True)

Directory = Annotated[
    Path, typer.Option("--dir", help="Where the catalog files are.", file_okay=False)
]


@app.command()
def write(directory: Directory = CATALOG_DIR) -> None:
    """Regenerate asyncapi.json and index.html from the code (`make docs` runs this)."""
    from carebridge_ops.catalog.files import write_catalog
    from carebridge_ops.catalog.sources import CatalogError

    with console.status("Reading the services and generating their AsyncAPI documents"):
        try:
            written = write_catalog(directory)
        except CatalogError as exc:
            _fail(f"cannot build the catalog: {exc}")
    for path in written:
        console.print(f"wrote {path}")


@app.command()
def check(directory: Directory = CATALOG_DIR) -> None:
    """Exit 1 when the committed catalog differs from what the code gives."""
    from carebridge_ops.catalog.files import stale_files

    with console.status("Generating the catalog in memory"):
        stale = stale_files(directory)
    if stale:
        _fail(f"stale event catalog ({', '.join(stale)}): run `make docs` and commit {directory}")
    console.print("the event catalog is up to date")


@app.command()
def service(
    name: Annotated[str, typer.Argument(help="intake, booking, referral or notification")],
) -> None:
    """Print FastStream's AsyncAPI document of one service (the catalog merges the four)."""
    from carebridge_contracts.services import SERVICES
    from carebridge_ops.catalog.asyncapi import service_asyncapi
    from carebridge_ops.catalog.sources import service_events

    if name not in SERVICES:
        _fail(f"unknown service {name!r}: pick one of {', '.join(SERVICES)}")
    typer.echo(json.dumps(service_asyncapi(service_events(name)), indent=2))


@app.command()
def serve(
    directory: Directory = CATALOG_DIR,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
) -> None:
    """Serve the catalog page over HTTP until Ctrl-C."""
    from carebridge_ops.catalog.browser import serving

    if not (directory / PAGE_FILE).is_file():
        _fail(f"no {PAGE_FILE} in {directory}: run `make docs` first")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with serving(directory, host, port) as url:
            console.print(f"event catalog at [bold]{url}{PAGE_FILE}[/bold] (Ctrl-C stops)")
            stop.wait()
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} ({exc.strerror}): pick another with --port")
    console.print("stopped")


@app.command()
def screenshot(
    directory: Directory = CATALOG_DIR,
    out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
    width: Annotated[int, typer.Option(help="Window width in pixels.")] = 1440,
    height: Annotated[int, typer.Option(help="Window height in pixels.")] = 1800,
) -> None:
    """Photograph the catalog page with headless Chromium (default: <dir>/catalog.png)."""
    from carebridge_ops.catalog import browser

    target = out or directory / SCREENSHOT_FILE
    if not (directory / PAGE_FILE).is_file():
        _fail(f"no {PAGE_FILE} in {directory}: run `make docs` first")
    with console.status("Rendering the page in headless Chromium"):
        try:
            with browser.serving(directory) as url:
                browser.screenshot(url + PAGE_FILE, target, width=width, height=height)
        except browser.BrowserError as exc:
            _fail(str(exc))
    console.print(f"wrote {target}")


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)
