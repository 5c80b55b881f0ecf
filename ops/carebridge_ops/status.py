"""`carebridge status`: one screen for ops, per service: readiness and its failing checks,
consumer lag, outbox backlog, dead letters and the last error.

It reads each service's `/readyz` (JSON) and `/metrics` (Prometheus text). A service that does
not answer is shown as unreachable, never as a crash. Exit status: 0 when every service is
ready, 1 when one is not ready or unreachable (for scripts and cron checks).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from carebridge_contracts.services import SERVICES, service_port
from carebridge_ops.console import err, out

EXIT_NOT_READY = 1


def default_url(service: str) -> str:
    """Where `make run` serves it: the service's default port on this machine."""
    return f"http://127.0.0.1:{service_port(service)}"


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    url: str
    reachable: bool
    ready: bool = False
    failing: tuple[str, ...] = ()
    consumer_lag: int | None = None
    outbox_rows: int | None = None
    outbox_oldest_s: float | None = None
    dead_letters: int | None = None
    last_error: str | None = None
    problem: str | None = None  # why it is unreachable


def _samples(metrics_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def _total(samples: Mapping[str, list[tuple[dict[str, str], float]]], name: str) -> int | None:
    values = samples.get(name)
    return None if values is None else int(sum(value for _, value in values))


def _of_service(
    samples: Mapping[str, list[tuple[dict[str, str], float]]], name: str, service: str
) -> float | None:
    for labels, value in samples.get(name, []):
        if labels.get("producer") == service:
            return value
    return None


def _age(at: str, now: datetime) -> str:
    seconds = max((now - datetime.fromisoformat(at)).total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def summarize(
    service: str, url: str, readyz: dict[str, Any], metrics_text: str, now: datetime
) -> ServiceStatus:
    """One service's row from its /readyz body and /metrics text."""
    samples = _samples(metrics_text)
    lag = _total(samples, "carebridge_consumer_lag")
    if lag is None and readyz.get("consumer"):
        lag = readyz["consumer"].get("lag")
    rows = _of_service(samples, "carebridge_outbox_backlog_rows", service)
    oldest = _of_service(samples, "carebridge_outbox_oldest_age_seconds", service)
    if rows is None and readyz.get("outbox"):
        rows, oldest = readyz["outbox"]["backlog_rows"], readyz["outbox"]["oldest_age_seconds"]
    error = readyz.get("last_error")
    return ServiceStatus(
        service=service,
        url=url,
        reachable=True,
        ready=readyz.get("status") == "ready",
        failing=tuple(readyz.get("failing", ())),
        consumer_lag=lag,
        outbox_rows=None if rows is None else int(rows),
        outbox_oldest_s=oldest,
        dead_letters=_total(samples, "carebridge_events_dead_lettered_total") or 0,
        last_error=None
        if not error
        else f"{error['component']}: {error['error']} ({_age(error['at'], now)})",
    )


async def probe(client: httpx.AsyncClient, service: str, url: str) -> ServiceStatus:
    try:
        readyz, metrics = await asyncio.gather(
            client.get(f"{url}/readyz"), client.get(f"{url}/metrics")
        )
        body = readyz.json()
        if not isinstance(body, dict) or "status" not in body:
            raise ValueError("/readyz did not answer with a readiness report")
    except (httpx.HTTPError, ValueError) as exc:
        return ServiceStatus(service, url, reachable=False, problem=type(exc).__name__)
    return summarize(service, url, body, metrics.text, datetime.now(UTC))


async def collect(urls: Mapping[str, str], timeout_s: float) -> list[ServiceStatus]:
    """Every service's status, probed at once; each probe bounded by `timeout_s`."""
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return list(await asyncio.gather(*(probe(client, name, url) for name, url in urls.items())))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render(statuses: list[ServiceStatus]) -> Table:
    table = Table(title="carebridge status", title_justify="left")
    for column in ("service", "ready", "failing checks"):
        table.add_column(column)
    for column in ("consumer lag", "outbox rows", "oldest row", "dead letters"):
        table.add_column(column, justify="right")
    table.add_column("last error")
    for s in statuses:
        if not s.reachable:
            table.add_row(s.service, "[red]unreachable[/]", f"{s.url} ({s.problem})", *["-"] * 5)
            continue
        table.add_row(
            s.service,
            "[green]ready[/]" if s.ready else "[red]NOT READY[/]",
            ", ".join(s.failing) or "-",
            _number(s.consumer_lag),
            _number(s.outbox_rows),
            "-" if s.outbox_oldest_s is None else f"{s.outbox_oldest_s:.1f}s",
            _number(s.dead_letters),
            s.last_error or "-",
        )
    return table


def _url_option(service: str) -> Any:
    return typer.Option(
        f"--{service}-url",
        envvar=f"CAREBRIDGE_{service.upper()}_URL",
        show_envvar=True,
        help=f"Base URL of the {service} service.",
    )


def _status_parameters() -> list[inspect.Parameter]:
    """`--<service>-url` for every declared service, then the common options."""
    urls = [
        inspect.Parameter(
            f"{service}_url",
            inspect.Parameter.KEYWORD_ONLY,
            default=default_url(service),
            annotation=Annotated[str, _url_option(service)],
        )
        for service in SERVICES
    ]
    timeout = inspect.Parameter(
        "timeout",
        inspect.Parameter.KEYWORD_ONLY,
        default=3.0,
        annotation=Annotated[
            float, typer.Option(help="Seconds to wait for each service's answer.")
        ],
    )
    as_json = inspect.Parameter(
        "as_json",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--json", help="JSON lines, one per service, instead of the table.")
        ],
    )
    return [*urls, timeout, as_json]


def status_command(**options: Any) -> None:
    """Readiness, consumer lag, outbox backlog, dead letters and last error of every service.

    Dead letters: what the service's process parked since it started (`carebridge dlq` lists
    the letters). Exit status 1 when a service is not ready or does not answer.
    """
    urls: dict[str, str] = {service: options[f"{service}_url"] for service in SERVICES}
    timeout: float = options["timeout"]
    as_json: bool = options["as_json"]
    with err().status("asking the services..."):
        statuses = asyncio.run(collect({k: v.rstrip("/") for k, v in urls.items()}, timeout))
    if as_json:
        for status in statuses:
            typer.echo(json.dumps(asdict(status)))
    else:
        out().print(render(statuses))
        unreachable = [s.service for s in statuses if not s.reachable]
        if unreachable:
            err().print(
                f"[yellow]not answering:[/] {', '.join(unreachable)}. Is it running? `make run` "
                f"starts all {len(SERVICES)}; point at other hosts with --<service>-url or "
                "CAREBRIDGE_<SERVICE>_URL."
            )
    if not all(s.reachable and s.ready for s in statuses):
        raise typer.Exit(EXIT_NOT_READY)


# typer reads the options from the signature: one URL option per declared service.
status_command.__signature__ = inspect.Signature(_status_parameters())  # type: ignore[attr-defined]
