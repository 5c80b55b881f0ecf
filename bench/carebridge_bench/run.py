"""One benchmark run on a private, freshly made stack: start-up, journeys, throughput, report.

Order: the stack starts (timed), the topics are made, the four services start (timed, idle
memory read), the load sweep runs (peak memory sampled), the services stop; then the raw
baseline and the carebridge stage run against the same broker and database, with no service
running beside them. The sweep goes first so the services never replay the bench's backlog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from carebridge_bench import kafka_tools, report, throughput
from carebridge_bench.config import EMAIL_P99_LIMIT_MS, BenchConfig
from carebridge_bench.journeys import JourneyClient
from carebridge_bench.memory import PeakSampler, rss_mb
from carebridge_bench.sweep import (
    StepResult,
    SweepConfig,
    highest_rate_within,
    sweep,
    warm_up,
)
from carebridge_bench.timeline import MailReader
from carebridge_contracts.services import SERVICES
from carebridge_devstack._util import find_repo_root
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.kafka_auth import adopt_stack_login
from carebridge_devstack.stack import Stack
from carebridge_devstack.system import LocalSystem, SystemPorts
from carebridge_notification.settings import NotificationSettings
from carebridge_shared import consumer
from carebridge_shared.settings import ServiceSettings

IDLE_SETTLE_SECONDS = 3.0


def _default(model: type[ServiceSettings], name: str) -> Any:
    return model.model_fields[name].default


def service_env(config: BenchConfig) -> dict[str, dict[str, str]]:
    """The services run with their defaults; only what LocalSystem sets for the journey tests
    (a 200 ms dispatcher interval) is put back to the default, and the log level is explicit."""
    common = {"CAREBRIDGE_LOG_LEVEL": config.service_log_level}
    env = {name: dict(common) for name in SERVICES}
    env["notification"]["CAREBRIDGE_DISPATCH_INTERVAL_MS"] = str(
        _default(NotificationSettings, "dispatch_interval_ms")
    )
    return env


def settings_used(config: BenchConfig) -> dict[str, Any]:
    return {
        "relay_poll_interval_ms": _default(ServiceSettings, "relay_poll_interval_ms"),
        "relay_batch_size": _default(ServiceSettings, "relay_batch_size"),
        "db_pool_max_size": _default(ServiceSettings, "db_pool_max_size"),
        "kafka_topic_partitions": _default(ServiceSettings, "kafka_topic_partitions"),
        "consumer_max_poll_records": consumer.MAX_POLL_RECORDS,
        "consumer_idle_wait_ms": consumer.IDLE_POLL_MS,
        "dispatch_interval_ms": _default(NotificationSettings, "dispatch_interval_ms"),
        "dispatch_batch_size": _default(NotificationSettings, "dispatch_batch_size"),
        "dispatch_concurrency": _default(NotificationSettings, "dispatch_concurrency"),
        "service_log_level": config.service_log_level,
        "postgres_fsync": True,
        "topic_timestamps": "LogAppendTime (broker time)",
    }


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except OSError:
        return None
    return out.stdout.strip() or None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _journey_phase(
    config: BenchConfig,
    endpoints: StackEndpoints,
    work: Path,
    run_id: str,
    console: Console,
    stack_pids: dict[str, int],
) -> dict[str, Any]:
    system = LocalSystem(endpoints, work, ports=SystemPorts.free(), extra_env=service_env(config))
    started = time.monotonic()
    with console.status("starting the four services"):
        ready = system.start(timeout=240)
    services_ready_s = time.monotonic() - started
    try:
        pids = {name: system.group[name].pid for name in SERVICES}
        process_ids = {name: pid for name, pid in pids.items() if pid is not None}
        time.sleep(IDLE_SETTLE_SECONDS)
        idle = rss_mb(process_ids)
        console.print(f"services ready in {services_ready_s:.1f}s; idle RSS "
                      + ", ".join(f"{k} {v:.0f} MB" for k, v in idle.items()))  # fmt: skip
        urls = {name: system.url(name) for name in SERVICES}
        client = JourneyClient(urls, run_id=run_id, clinicians=config.clinicians)
        mail = MailReader(system.mail_dir)
        sampler = PeakSampler(
            {**process_ids, report.GENERATOR: os.getpid()},  # it shares the cores
            cpu_only={**stack_pids, **_sink_pid(system)},
        )
        idle_cpu: dict[str, float] = {}

        def measure_idle() -> None:
            with console.status(f"idle CPU: {config.idle_seconds:g}s with no load"):
                idle_cpu.update(idle_cpu_ms_per_s(sampler, config.idle_seconds))
            console.print("idle CPU (ms per second): "
                          + ", ".join(f"{k} {v:.1f}" for k, v in idle_cpu.items()))  # fmt: skip
            sampler.restart_cpu()  # the sweep's CPU table leaves warm-up and idle out

        with _progress(console) as progress, sampler:
            task = progress.add_task("journeys", total=None)

            def on_step(step: int, rate: float, count: int) -> None:
                progress.reset(task, total=count, description=f"{rate:g} journeys/s")

            results = asyncio.run(
                _sweep(
                    client,
                    endpoints.kafka_bootstrap,
                    mail,
                    warming=_WarmUp(
                        rate=config.rates[0],
                        seconds=config.warmup_seconds,
                        started=lambda count: progress.reset(
                            task, total=count, description="warm-up (not measured)"
                        ),
                        advanced=lambda: progress.advance(task),
                        done=measure_idle,
                    ),
                    config=SweepConfig(
                        rates=config.rates,
                        step_seconds=config.step_seconds,
                        drain_seconds=config.drain_seconds,
                        stop_above_ms=config.stop_above_ms,
                        run_id=run_id,
                        database_url=endpoints.database_url,
                        on_step=on_step,
                        on_journey=lambda: progress.advance(task),
                        cpu_now=sampler.cpu_now,
                    ),
                )
            )
        # again once every process is warm (Kafka's JIT compiles while the services start)
        with console.status(f"idle CPU after the sweep: {config.idle_seconds:g}s"):
            idle_after = idle_cpu_ms_per_s(sampler, config.idle_seconds)
        console.print("idle CPU after the sweep (ms per second): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in idle_after.items()))  # fmt: skip
    finally:
        system.stop()
    return {
        "services_ready_s": services_ready_s,
        "ready_by_process_s": ready,
        "memory_mb": {"idle": idle, "peak_under_load": sampler.peaks},
        "cpu_seconds_under_load": sampler.cpu_seconds,
        "idle_cpu_ms_per_s": idle_cpu,
        "idle_cpu_ms_per_s_after_sweep": idle_after,
        "journeys": journeys_section(results, system.log_dir),
    }


def idle_cpu_ms_per_s(sampler: PeakSampler, seconds: float) -> dict[str, float]:
    """CPU milliseconds per second of each process over `seconds` of no load."""
    before, started = sampler.cpu_now(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = sampler.cpu_now(), time.monotonic() - started
    return {
        name: round((after[name] - before[name]) * 1000 / elapsed, 2)
        for name in after
        if name in before
    }


def _sink_pid(system: LocalSystem) -> dict[str, int]:
    pid = system.group["smtp"].pid
    return {"smtp sink": pid} if pid is not None else {}


def journeys_section(results: list[StepResult], log_dir: Path) -> dict[str, Any]:
    return {
        "steps": [r.as_dict() for r in results],
        "limit_ms": EMAIL_P99_LIMIT_MS,
        "highest_rate_within_limit": highest_rate_within(results, EMAIL_P99_LIMIT_MS),
        "logs": str(log_dir),
    }


def throughput_section(
    baseline: throughput.ThroughputResult, stage: throughput.ThroughputResult
) -> dict[str, Any]:
    """One round of baseline and stage (no minimal loop), summarised like a full run."""
    return throughput.summarise_repeats([{"baseline": baseline, "stage": stage}])


@dataclass(frozen=True)
class _WarmUp:
    rate: float
    seconds: float
    started: Callable[[int], None]
    advanced: Callable[[], None]
    done: Callable[[], None]  # measures idle CPU: after the warm-up, before the sweep


async def _sweep(
    client: JourneyClient,
    bootstrap: str,
    mail: MailReader,
    *,
    warming: _WarmUp,
    config: SweepConfig,
) -> list[Any]:
    try:
        await client.set_up()
        warmed = 0
        if warming.seconds > 0:
            warming.started(max(1, round(warming.rate * warming.seconds)))
            warmed = await warm_up(
                client, rate=warming.rate, seconds=warming.seconds, on_start=warming.advanced
            )
            await asyncio.sleep(config.settle_seconds)
        warming.done()
        return await sweep(client, bootstrap, mail, config, first_index=warmed)
    finally:
        await client.close()


async def _throughput_phase(
    config: BenchConfig,
    endpoints: StackEndpoints,
    work: Path,
    run_id: str,
    console: Console,
    servers: dict[str, int],
) -> dict[str, Any]:
    messages: dict[throughput.Kind, int] = {
        "baseline": config.baseline_messages,
        "minimal": config.minimal_messages,
        "stage": config.messages,
    }
    repeats: list[dict[str, throughput.ThroughputResult]] = []
    for repeat in range(config.repeats):
        found: dict[str, throughput.ThroughputResult] = {}
        for kind in throughput.order_of_repeat(repeat):
            label = f"throughput {repeat + 1}/{config.repeats}: {kind}, {messages[kind]} messages"
            with console.status(label):
                result = await throughput.measure(
                    kind,
                    bootstrap=endpoints.kafka_bootstrap,
                    database_url=endpoints.database_url,
                    messages=messages[kind],
                    run_id=f"{run_id}{repeat}",
                    log_dir=work / "logs",
                    servers=servers,
                )
            console.print(f"{label}: {result.received} out, "
                          f"{report.fmt(result.per_second)} events/s, CPU ms/event "
                          f"{result.cpu_ms_per_event}")  # fmt: skip
            found[kind] = result
        repeats.append(found)
    return throughput.summarise_repeats(repeats)


def base_report(
    config: BenchConfig,
    started_at: datetime,
    *,
    startup: dict[str, Any],
    commit: str | None,
    load_average: tuple[float, float, float],
) -> report.Report:
    """The run's document before its phases fill in `throughput`, `journeys` and memory."""
    return {
        "schema": 1,
        "started_at": started_at.isoformat(),
        "git_commit": commit,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in load_average],
        },
        "config": config.as_dict(),
        "settings": settings_used(config),
        "startup": startup,
        "throughput": None,
        "journeys": None,
    }


def finish_report(result: report.Report, results_dir: Path, stamp: str, console: Console) -> Path:
    """Headline figures, targets, JSON (the run's and latest.json), the tables and the plot."""
    result["headline"] = report.headline(result)
    result["cpu_per_journey"] = report.cpu_per_journey(result)
    result["targets"] = report.evaluate_targets(result)
    run_file, _ = report.write_json(result, results_dir, stamp)
    report.print_report(console, result)
    if report.plot(result, results_dir / f"{stamp}.png"):
        shutil.copyfile(results_dir / f"{stamp}.png", results_dir / "latest.png")
    return run_file


def run_bench(config: BenchConfig, console: Console) -> report.Report:
    """Start the private stack, measure, stop it, write and print the results."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    root = find_repo_root()
    stack_dir = config.stack_dir or root / ".stack-bench"
    results_dir = config.results_dir or root / "bench" / "results"
    run_id = uuid.uuid4().hex[:6]
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    load_at_start = os.getloadavg()
    stack = Stack(
        stack_dir, kafka_port=config.kafka_port, kafka_controller_port=config.kafka_port + 1,
        pg_port=config.pg_port, console=console,
    )  # fmt: skip
    stack.down(purge=True)
    with console.status("starting a fresh Kafka and PostgreSQL"):
        info = stack.up()
    console.print(f"stack ready in {info.total_s:.1f}s (Kafka {info.kafka_ready_s:.1f}s, "
                  f"PostgreSQL {info.postgres_ready_s:.1f}s)")  # fmt: skip
    endpoints = info.endpoints
    adopt_stack_login(info.kafka_env)  # the bench's own clients log in as the admin
    work = stack_dir / "run"
    shutil.rmtree(work, ignore_errors=True)
    result = base_report(
        config,
        started_at,
        startup={
            "kafka_s": round(info.kafka_ready_s, 2),
            "postgres_s": round(info.postgres_ready_s, 2),
            "stack_s": round(info.total_s, 2),
        },
        commit=_git_commit(root),
        load_average=load_at_start,
    )
    try:
        asyncio.run(
            kafka_tools.create_topics(
                info.kafka_bootstrap,
                partitions=_default(ServiceSettings, "kafka_topic_partitions"),
                replication_factor=1,
            )
        )
        servers = {name: pids[0] for name, pids in stack.pids().items() if pids}
        if config.journeys:
            phase = _journey_phase(config, endpoints, work, run_id, console, servers)
            result["startup"]["services_ready_s"] = round(phase.pop("services_ready_s"), 2)
            result.update(phase)
        if config.throughput:
            result["throughput"] = asyncio.run(
                _throughput_phase(config, endpoints, work, run_id, console, servers)
            )
    finally:
        stack.down()
    result["duration_s"] = round(time.monotonic() - t0, 1)
    run_file = finish_report(result, results_dir, started_at.strftime("%Y%m%dT%H%M%SZ"), console)
    console.print(f"results: {run_file} (and latest.json, latest.png)")
    return result
