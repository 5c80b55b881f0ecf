"""Wiring every service shares: pool, migrations, topics, relay, consumers, HTTP, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

import asyncpg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from carebridge_contracts import BaseEvent
from carebridge_contracts.registry import dlq_topic, topic_for
from carebridge_shared.auth import TokenVerifier, authenticate
from carebridge_shared.clock import Clock, SystemClock
from carebridge_shared.consumer import ConsumerRuntime, RetryPolicy, Subscriptions
from carebridge_shared.context import S, ServiceContext
from carebridge_shared.db import create_pool, verify_migrations
from carebridge_shared.health import KafkaProbe, Readiness, sample_consumer_lag
from carebridge_shared.http import install_http_plumbing
from carebridge_shared.kafka import KafkaSecurity, ensure_topics, make_producer
from carebridge_shared.logging import configure_logging, get_logger
from carebridge_shared.outbox import Outbox
from carebridge_shared.provisioning import deploy_command, deploy_main, refuse_writable_audit_trail
from carebridge_shared.relay import OutboxRelay
from carebridge_shared.settings import ServiceSettings
from carebridge_shared.tracing import configure_tracing, flush_tracing

log = get_logger(__name__)


StartupHook = Callable[[ServiceContext[S]], Awaitable[None]]
# A service's own readiness condition: (check name, probe); the probe returns None when it
# holds, else why not. /readyz is 503 and names the check while it fails.
ReadinessCheck = tuple[str, Callable[[ServiceContext[S]], Awaitable[str | None]]]
BackgroundTask = Callable[[ServiceContext[S], asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceDefinition(Generic[S]):
    """One service's wiring. `publishes` lists every event class its outbox may write: the
    outbox refuses any other, and the event catalog (docs/catalog) is generated from it."""

    name: str
    settings: S
    migrations: Path
    routers: Sequence[APIRouter] = ()
    subscriptions: Subscriptions[S] | None = None
    publishes: Sequence[type[BaseEvent]] = ()
    on_startup: Sequence[StartupHook[S]] = ()
    background: Sequence[BackgroundTask[S]] = ()
    readiness_checks: Sequence[ReadinessCheck[S]] = ()
    clock: Clock = field(default_factory=SystemClock)


async def service_context(request: Request) -> ServiceContext:
    """FastAPI dependency: the running service's context. A coroutine, as every dependency
    here is: FastAPI runs a plain function in its thread pool, a hand-off per request that
    cost booking and intake about a tenth of their CPU (issue 16)."""
    context: ServiceContext = request.app.state.context
    return context


def instance_name(settings: ServiceSettings, service: str) -> str:
    return settings.instance_id or f"{service}-{os.getpid()}"


def topics_used(publishes: Sequence[type[BaseEvent]], consumed: Sequence[str]) -> list[str]:
    """The topics a service writes or reads: those of the events it publishes, those it
    consumes and their dead-letter topics. Its Kafka login may see no other (ACLs)."""
    written = {str(topic_for(event)) for event in publishes}
    return sorted(written | set(consumed) | {dlq_topic(topic) for topic in consumed})


@dataclass
class _Running:
    """What a started service holds until it stops."""

    pool: asyncpg.Pool
    runtime: ConsumerRuntime | None
    tasks: list[asyncio.Task[None]]
    stop: asyncio.Event
    kafka_probe: KafkaProbe


async def _open_pool(definition: ServiceDefinition[S]) -> asyncpg.Pool:
    """The service's pool, once its schema is known to be migrated. The service never changes
    its schema (ADR 0014): the deploy step migrates it as the owner role; here it only checks,
    and refuses a login that could rewrite its audit trail."""
    settings = definition.settings
    pool = await create_pool(
        settings.database_url, definition.name, max_size=settings.db_pool_max_size
    )
    try:
        await verify_migrations(
            pool,
            definition.name,
            definition.migrations,
            deploy_command=deploy_command(definition.name),
        )
        await refuse_writable_audit_trail(pool, definition.name)
    except BaseException:
        await pool.close()
        raise
    return pool


def _consumer_runtime(
    definition: ServiceDefinition[S],
    context: ServiceContext[S],
    producer: Callable[[], Any],
    security: KafkaSecurity,
) -> ConsumerRuntime | None:
    """The runtime of the service's subscriptions (None: it consumes nothing)."""
    if definition.subscriptions is None:
        return None
    settings = definition.settings
    return ConsumerRuntime(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        service=context,
        subscriptions=definition.subscriptions,
        group_id=settings.consumer_group or definition.name,
        producer_factory=producer,
        retry=RetryPolicy(
            settings.consumer_max_attempts,
            settings.consumer_backoff_initial_ms / 1000,
            settings.consumer_backoff_max_ms / 1000,
        ),
        graceful_timeout=settings.shutdown_grace_seconds,
        auto_offset_reset=settings.consumer_offset_reset,
        security=security,
    )


async def _start(
    definition: ServiceDefinition[S],
    context: ServiceContext[S],
    relay: OutboxRelay,
    runtime: ConsumerRuntime | None,
    security: KafkaSecurity,
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """Topics, start-up hooks, then the relay, the consumers and the background tasks."""
    settings = definition.settings
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        topics_used(definition.publishes, runtime.topics if runtime else []),
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
        security=security,
    )
    for hook in definition.on_startup:
        await hook(context)
    tasks = [asyncio.create_task(relay.run(stop), name="outbox-relay")]
    if runtime is not None:
        await runtime.start()
    tasks += [
        asyncio.create_task(task(context, stop), name=getattr(task, "__name__", "task"))
        for task in definition.background
    ]
    if runtime is not None:
        lag = sample_consumer_lag(runtime, settings.lag_sample_interval_seconds, stop)
        tasks.append(asyncio.create_task(lag, name="consumer-lag"))
    return tasks


async def _shutdown(running: _Running, grace_seconds: float) -> None:
    """Drain the consumers, stop the tasks (at most `grace_seconds`), close the clients."""
    log.info("service_stopping")
    if running.runtime is not None:
        await running.runtime.stop()
    running.stop.set()
    await asyncio.wait(running.tasks, timeout=grace_seconds)
    for task in running.tasks:
        task.cancel()
    await running.kafka_probe.close()
    await running.pool.close()
    flush_tracing()
    log.info("service_stopped")


async def _start_service(
    definition: ServiceDefinition[S], app: FastAPI, state: dict[str, Any]
) -> _Running:
    settings = definition.settings
    client = instance_name(settings, definition.name)
    security = KafkaSecurity.from_settings(settings)  # one place for every Kafka client
    pool = await _open_pool(definition)
    outbox = Outbox(definition.name, definition.name, publishes=definition.publishes)
    context = ServiceContext(definition.name, settings, pool, outbox, definition.clock)
    app.state.context = context

    def producer() -> Any:
        return make_producer(settings.kafka_bootstrap_servers, client_id=client, security=security)

    stop = asyncio.Event()
    relay = OutboxRelay(
        pool,
        definition.name,
        producer,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_ms / 1000,
    )
    runtime = _consumer_runtime(definition, context, producer, security)
    tasks = await _start(definition, context, relay, runtime, security, stop)
    kafka_probe = KafkaProbe(settings.kafka_bootstrap_servers, f"{client}-probe", security=security)
    state["readiness"] = Readiness(
        definition.name,
        pool,
        relay,
        runtime,
        kafka_probe,
        settings.ready_outbox_max_age_seconds,
        extra=[
            (name, functools.partial(probe, context)) for name, probe in definition.readiness_checks
        ],
    )
    log.info("service_started", instance=client, port=settings.http_port)
    return _Running(pool, runtime, tasks, stop, kafka_probe)


def _add_probe_routes(app: FastAPI, service: str, state: dict[str, Any]) -> None:
    """/healthz, /readyz and /metrics: open, unlike the API routes."""

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """200 when ready; 503 names the failing checks (`failing`) and why (`problems`)."""
        readiness: Readiness | None = state.get("readiness")
        if readiness is None:
            return JSONResponse(
                status_code=503, content={"status": "starting", "service": service, "checks": {}}
            )
        report = await readiness.report()
        return JSONResponse(status_code=200 if report["status"] == "ready" else 503, content=report)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        readiness: Readiness | None = state.get("readiness")
        if readiness is not None:
            await readiness.report()  # readiness and outbox gauges as of this scrape
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(definition: ServiceDefinition[S]) -> FastAPI:
    settings = definition.settings
    configure_logging(definition.name, settings.log_level)
    configure_tracing(
        definition.name,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        instance=instance_name(settings, definition.name),
    )
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = await _start_service(definition, app, state)
        try:
            yield
        finally:
            await _shutdown(running, settings.shutdown_grace_seconds)

    app = FastAPI(
        title=f"carebridge {definition.name}",
        lifespan=lifespan,
        # FastAPI's own request telemetry records url.path and url.query, which hold patient
        # ids; the HTTP plumbing traces requests by route template instead (ADR 0010).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_http_plumbing(app)
    # Every API route needs a valid bearer token; only the probes stay open (ADR 0012).
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    for router in definition.routers:
        app.include_router(router, dependencies=[Depends(authenticate)])
    _add_probe_routes(app, definition.name, state)
    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run the API; SIGTERM drains in-flight requests and events before exiting."""
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        loop="uvloop",  # issue 16: the event loop and HTTP parser in C
        http="httptools",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


def service_main(
    name: str, migrations: Path, start: Callable[[], None], argv: Sequence[str] | None = None
) -> None:
    """``python -m carebridge_<name> [serve | migrate]``: run the service (the default), or run
    its deploy step (provision its roles and apply its migrations as the owner role)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in ([], ["serve"]):
        start()
        return
    if args == ["migrate"]:
        raise SystemExit(deploy_main(name, migrations))
    print(
        f"usage: python -m carebridge_{name} [serve | migrate]\n"
        "  serve    run the service (default); its DATABASE_URL is its own login role\n"
        f"  migrate  the deploy step: {deploy_command(name)}",
        file=sys.stderr,
    )
    raise SystemExit(2)
