"""The chaos run: load + faults + poison against a private stack, then the oracle.

    python -m carebridge_devstack chaos --journeys 2000            # make chaos
    python -m carebridge_devstack chaos --kafka-nodes 3            # make chaos-cluster

It uses its own stack directory and ports (default ``.stack-chaos``, Kafka 28092, PostgreSQL
24432), wiped at the start, so it never touches the shared dev stack. Services run as
replicas (``booking-1``, ``booking-2`` ...) in their default consumer groups.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from carebridge_contracts.services import SERVICES

from ._util import find_repo_root, free_port
from .chaos_backlog import Backlog, consumer_groups, wait_until_quiet
from .chaos_faults import FaultRecord, FaultScheduler, make_plan
from .chaos_load import Client, Journey, LoadConfig, LoadStats, run_load, set_up
from .chaos_oracle import Verdict, check
from .chaos_poison import Poison, consumed_topics, inject, poison_set
from .kafka_auth import stack_login
from .stack import Stack, StackInfo
from .system import LocalSystem, SystemPorts

QUIET_WITHIN_S = 420.0  # after the load, until no delivery is owed, no row waits, no group lags


@dataclass
class ChaosConfig:
    journeys: int = 2000
    kafka_nodes: int = 1
    replicas: int = 2  # of every consuming service (booking, referral, notification)
    intake_replicas: int = 1
    concurrency: int = 12
    window_s: float | None = None  # default: ~0.3 s per journey, at least 60 s
    kills_per_service: int = 3
    kafka_fault: bool = True
    postgres_faults: tuple[str, ...] = ("postgres-restart", "postgres-crash")
    poison: bool = True
    seed: int | None = None
    stack_dir: Path | None = None
    kafka_port: int = 28092
    pg_port: int = 24432
    work_dir: Path | None = None
    results: Path | None = None
    time_limit_s: float = 1800.0
    clinicians: int = 10
    fresh_stack: bool = True

    def window(self) -> float:
        return self.window_s if self.window_s is not None else max(60.0, self.journeys * 0.3)


@dataclass
class ChaosResult:
    config: dict[str, Any]
    verdict: Verdict
    faults: list[FaultRecord]
    journeys: list[Journey]
    load: LoadStats
    process_starts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.summary.get("problems")


def _summarise(result: ChaosResult, config: ChaosConfig) -> dict[str, Any]:
    f = result.verdict.figures
    kills = [r for r in result.faults if r.kind == "kill"]
    planned = {name: 1 for name in result.process_starts}
    for record in kills:
        planned[record.target] = planned.get(record.target, 1) + 1
    unplanned = {
        name: n - planned.get(name, 1)
        for name, n in result.process_starts.items()
        if n != planned.get(name, 1)
    }
    recoveries = [r.recovery_s for r in result.faults if r.recovery_s is not None]
    kill_recoveries = [r.recovery_s for r in kills if r.recovery_s is not None]
    failed = [j for j in result.journeys if j.error]
    problems: list[str] = []
    if failed:
        problems.append(f"{len(failed)} journeys failed, e.g. {failed[0].error}")
    problems += [f"fault {r.kind} {r.target}: {r.error}" for r in result.faults if r.error]
    if unplanned:
        problems.append(f"processes restarted or died without a planned kill: {unplanned}")
    return {
        "journeys": config.journeys,
        "journeys_completed": len(result.journeys) - len(failed),
        "service_kills": len(kills),
        "service_restarts": len(kills),
        "kafka_faults": sum(r.kind in ("kafka-crash", "broker-kill") for r in result.faults),
        "postgres_faults": sum(r.kind.startswith("postgres") for r in result.faults),
        "events_produced": f.get("events_produced"),
        "events_consumed": sum(f.get("events_consumed", {}).values()),
        "lost": f.get("lost"),
        "duplicated_effects": f.get("duplicated_effects"),
        "dlq": f.get("dlq_distinct"),
        "dlq_expected": f.get("dlq_expected"),
        "worst_recovery_after_kill_s": max(kill_recoveries, default=None),
        "worst_recovery_any_fault_s": max(recoveries, default=None),
        "problems": problems,
    }


def print_summary(console: Console, result: ChaosResult) -> None:
    s, f = result.summary, result.verdict.figures
    nodes = result.config["kafka_nodes"]
    kind = f"{nodes}-broker KRaft cluster" if nodes > 1 else "single broker"
    title = f"chaos run: {kind}"
    table = Table(title=title, show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, object]] = [
        ("journeys (requested / completed)", f"{s['journeys']} / {s['journeys_completed']}"),
        ("assessments accepted", f.get("assessments_accepted")),
        ("bookings accepted (found by lookup after a lost reply)",
         f"{f.get('bookings_accepted')} ({f.get('bookings_found_by_lookup')})"),
        ("service SIGKILLs / restarts", f"{s['service_kills']} / {s['service_restarts']}"),
        ("Kafka faults / PostgreSQL faults", f"{s['kafka_faults']} / {s['postgres_faults']}"),
        ("events produced (outbox rows published)", s["events_produced"]),
        ("records on topics (republished copies)",
         f"{f.get('records_on_topics')} ({f.get('republished_copies')})"),
        ("events consumed (inbox rows)", s["events_consumed"]),
        ("lost", s["lost"]),
        ("duplicated effects", s["duplicated_effects"]),
        ("double-booked slots", f.get("double_bookings")),
        ("per-patient order violations", f.get("order_violations")),
        ("DLQ (distinct) / expected = poison x subscribed groups",
         f"{s['dlq']} / {s['dlq_expected']}"),
        ("referrals opened / consents / care-plan versions / care teams",
         f"{f.get('referrals_opened')} / {f.get('consents_granted_events')} / "
         f"{f.get('plan_updated_events')} / {f.get('care_teams_formed')}"),
        ("confirmations sent / SMTP re-sends (same Message-ID)",
         f"{f.get('confirmations_sent')} / {f.get('smtp_resends_same_message_id')}"),
        ("client retries / unknown booking outcomes",
         f"{result.load.retries} / {result.load.unknown_bookings}"),
        ("worst recovery after a kill (s)", s["worst_recovery_after_kill_s"]),
        ("worst recovery after any fault (s)", s["worst_recovery_any_fault_s"]),
        ("oracle violations", len(result.verdict.violations)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    faults = Table(title="faults")
    for column in ("at (s)", "fault", "target", "down (s)", "ready (s)", "recovered (s)"):
        faults.add_column(column)
    for r in result.faults:
        faults.add_row(str(r.at_s), r.kind, r.target, str(r.down_s), str(r.ready_s),
                       str(r.recovery_s) if r.error is None else f"[red]{r.error}[/]")  # fmt: skip
    console.print(faults)
    for problem in s["problems"]:
        console.print(f"[red]problem:[/] {problem}")
    for violation in result.verdict.violations[:30]:
        console.print(f"[red]violation:[/] {violation}")


async def _quiet_reading(backlog: Backlog) -> dict[str, int]:
    """Deliveries the dispatcher owes now, then (so that their NotificationSent rows count)
    unpublished outbox rows and consumer lag."""
    owed = {"notification.deliveries_owed": await _deliveries_owed(backlog.database_url)}
    try:
        return owed | await backlog.totals()
    except Exception:
        await backlog.close()  # reconnect on the next reading
        raise


async def _poison_during_load(bootstrap: str, poisons: list[Poison], window: float,
                              rng: random.Random) -> None:  # fmt: skip
    async def one(poison: Poison) -> None:
        await asyncio.sleep(rng.uniform(0.15, 0.85) * window)
        await inject(bootstrap, poison)

    await asyncio.gather(*(one(p) for p in poisons))


async def _deliveries_owed(database_url: str) -> int:
    """Deliveries still to send: every pending confirmation (the oracle checks each was sent),
    anything else due now, and what falls due within a minute: a care-plan notice waits
    `care_plan_notice_delay_seconds` (10 s) before it goes out, and its NotificationSent row
    must not appear while the oracle reads (reminders weeks ahead are not owed)."""
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM notification.deliveries WHERE status = 'pending'"
            " AND (kind = 'confirmation' OR (due_at <= now() AND next_attempt_at <= now())"
            "      OR due_at BETWEEN now() AND now() + interval '1 minute')"
        )
        return int(value)
    finally:
        await conn.close()


async def _run_async(
    config: ChaosConfig, stack: Stack, system: LocalSystem, console: Console, run_id: str
) -> ChaosResult:
    rng = random.Random(config.seed)
    timings: dict[str, float] = {}
    groups = consumer_groups(system.log_dir)
    backlog = Backlog(stack.kafka_bootstrap, stack.database_url, groups)
    stats = LoadStats()
    urls = {name: system.urls(name) for name in SERVICES}
    client = Client(urls, stats)
    load_config = LoadConfig(
        run_id=run_id, journeys=config.journeys, concurrency=config.concurrency,
        window_s=config.window(), deadline_s=config.time_limit_s, clinicians=config.clinicians,
        seed=rng.randint(0, 10**9),
    )  # fmt: skip
    poisons = poison_set(run_id, consumed_topics(groups)) if config.poison else []
    plan = make_plan(
        system, rng, kills_per_service=config.kills_per_service, kafka_nodes=config.kafka_nodes,
        kafka_fault=config.kafka_fault, postgres_faults=config.postgres_faults,
        window_s=config.window(),
    )  # fmt: skip
    scheduler = FaultScheduler(system, stack, backlog, plan, rng)
    try:
        await set_up(client, load_config)
        console.print(f"load: {config.journeys} journeys over ~{config.window():.0f}s, "
                      f"{len(plan.faults)} faults, {len(poisons)} poison messages")  # fmt: skip
        started = time.monotonic()
        load_task = asyncio.create_task(run_load(client, load_config))
        fault_task = asyncio.create_task(scheduler.run())
        poison_task = asyncio.create_task(
            _poison_during_load(stack.kafka_bootstrap, poisons, config.window(), rng)
        )
        journeys = await load_task
        timings["load_s"] = time.monotonic() - started
        await poison_task
        faults = await fault_task
        timings["faults_done_s"] = time.monotonic() - started
        console.print(f"load done in {timings['load_s']:.0f}s; draining")
        # the oracle compares topics with databases: nothing may still be moving
        reading = await wait_until_quiet(lambda: _quiet_reading(backlog), within_s=QUIET_WITHIN_S)
        timings["drained_s"] = time.monotonic() - started
        verdict = await check(
            bootstrap=stack.kafka_bootstrap, database_url=stack.database_url,
            mail_dir=system.mail_dir, journeys=journeys, poisons=poisons, groups=groups,
            patient_prefix=f"cz{run_id}-",
        )  # fmt: skip
        if any(reading.values()):
            verdict.fail(f"system not quiet {QUIET_WITHIN_S:.0f} s after the load: {reading}")
        timings["oracle_s"] = time.monotonic() - started
    finally:
        await client.close()
        await backlog.close()
    starts = {name: p.starts for name, p in system.group.processes.items() if name != "smtp"}
    dead = [name for name, p in system.group.processes.items() if not p.alive()]
    result = ChaosResult(
        config={k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        verdict=verdict, faults=faults, journeys=journeys, load=stats,
        process_starts=starts, timings=timings,
    )  # fmt: skip
    result.summary = _summarise(result, config)
    if dead:
        result.summary["problems"].append(f"processes not running at the end: {dead}")
    result.summary["groups"] = groups
    return result


def run_chaos(config: ChaosConfig, console: Console | None = None) -> ChaosResult:
    """Start the private stack and the system, run everything, stop everything."""
    console = console or Console()
    # the run's own Kafka clients reconnect through every broker crash: keep their noise out
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    root = find_repo_root()
    stack_dir = config.stack_dir or root / ".stack-chaos"
    run_id = uuid.uuid4().hex[:6]
    stack = Stack(
        stack_dir, kafka_port=config.kafka_port, kafka_controller_port=config.kafka_port + 1,
        kafka_nodes=config.kafka_nodes, pg_port=config.pg_port, console=console,
    )  # fmt: skip
    if config.fresh_stack:
        stack.down(purge=True)
    t0 = time.monotonic()
    info = stack.up()
    with stack_login(info.kafka_env):  # the oracle, poison and backlog log in as the admin
        result, system = _run_system(config, stack, info, console, run_id, t0)
    result.summary["logs"] = str(system.log_dir)
    print_summary(console, result)
    results = config.results or stack_dir / "chaos-results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(as_json(result), indent=2, default=str) + "\n")
    console.print(f"results: {results}")
    return result


def _run_system(
    config: ChaosConfig, stack: Stack, info: StackInfo, console: Console, run_id: str, t0: float
) -> tuple[ChaosResult, LocalSystem]:
    stack_dir = stack.dir
    console.print(f"private stack ready in {info.total_s:.1f}s: {info.kafka_bootstrap}, "
                  f"{info.database_url}")  # fmt: skip
    work = config.work_dir or stack_dir / "run"
    if config.fresh_stack:
        shutil.rmtree(work, ignore_errors=True)  # mail and logs of an earlier run
    rf = str(min(3, config.kafka_nodes))
    common = {"CAREBRIDGE_KAFKA_REPLICATION_FACTOR": rf, "CAREBRIDGE_DB_POOL_MAX_SIZE": "6"}
    system = LocalSystem(
        info.endpoints, work,
        ports=SystemPorts(services={n: free_port() for n in SERVICES}, smtp=free_port()),
        extra_env={name: dict(common) for name in SERVICES},
        replicas={name: config.replicas for name in SERVICES if name != "intake"}
        | {"intake": config.intake_replicas},
    )  # fmt: skip
    try:
        ready = system.start(timeout=240)
        console.print(f"{len(ready) - 1} service processes ready in {max(ready.values()):.1f}s")
        result = asyncio.run(_run_async(config, stack, system, console, run_id))
        result.timings["total_s"] = time.monotonic() - t0
    finally:
        system.stop()
        stack.down()
    return result, system


def as_json(result: ChaosResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "summary": result.summary,
        "figures": result.verdict.figures,
        "violations": result.verdict.violations,
        "config": result.config,
        "timings": result.timings,
        "faults": [r.as_dict() for r in result.faults],
        "load": result.load.as_dict(),
        "process_starts": result.process_starts,
        "failed_journeys": [vars(j) for j in result.journeys if j.error][:50],
    }
