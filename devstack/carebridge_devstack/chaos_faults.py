"""Fault scheduler of the chaos run: SIGKILL service replicas, crash Kafka and PostgreSQL.

Faults run one at a time at random moments spread over the load window. A killed replica is
started again after a short pause; its recovery time runs from the kill until the replica is
ready again *and* its service has drained the backlog that existed when it became ready
(committed offsets at the end offsets of that moment, outbox published up to that row).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .chaos_backlog import Backlog
from .stack import Stack
from .system import LocalSystem


@dataclass(frozen=True)
class Fault:
    kind: str  # "kill" | "kafka-crash" | "broker-kill" | "postgres-crash" | "postgres-restart"
    target: str  # process name, "kafka-<node>" or "postgres"


@dataclass
class FaultRecord:
    kind: str
    target: str
    at_s: float
    down_s: float = 0.0
    ready_s: float | None = None
    recovery_s: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultPlan:
    faults: list[Fault]
    window_s: float
    pause_s: tuple[float, float] = (0.5, 3.0)  # dead time before a restart
    broker_down_s: float = 30.0  # cluster mode: how long the killed broker stays down
    recovery_timeout_s: float = 240.0


def make_plan(
    system: LocalSystem,
    rng: random.Random,
    *,
    kills_per_service: int,
    kafka_nodes: int,
    kafka_fault: bool,
    postgres_faults: tuple[str, ...],
    window_s: float,
) -> FaultPlan:
    """Every service killed `kills_per_service` times (a random replica each time), plus one
    Kafka crash (single broker) or one broker SIGKILL (cluster), plus the PostgreSQL faults:
    ``postgres-crash`` (SIGKILL of the postmaster and its backends) and/or
    ``postgres-restart`` (``pg_ctl stop -m fast``: every session is terminated)."""
    faults = [
        Fault("kill", rng.choice(instances))
        for instances in system.instances.values()
        for _ in range(kills_per_service)
    ]
    if kafka_fault:
        node = rng.randint(1, kafka_nodes)
        faults.append(Fault("broker-kill" if kafka_nodes > 1 else "kafka-crash", f"kafka-{node}"))
    faults += [Fault(kind, "postgres") for kind in postgres_faults]
    rng.shuffle(faults)
    return FaultPlan(faults, window_s)


@dataclass
class FaultScheduler:
    system: LocalSystem
    stack: Stack
    backlog: Backlog
    plan: FaultPlan
    rng: random.Random
    records: list[FaultRecord] = field(default_factory=list)
    _drains: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self) -> list[FaultRecord]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        count = len(self.plan.faults)
        # spread over the middle of the window, with jitter: always mid-load
        slot = self.plan.window_s * 0.8 / max(count, 1)
        for i, fault in enumerate(self.plan.faults):
            due = t0 + self.plan.window_s * 0.1 + slot * (i + self.rng.uniform(0.0, 0.6))
            await asyncio.sleep(max(0.0, due - loop.time()))
            record = FaultRecord(fault.kind, fault.target, at_s=round(loop.time() - t0, 1))
            self.records.append(record)
            try:
                await self._inject(fault, record)
            except Exception as exc:
                record.error = f"{type(exc).__name__}: {exc}"[:300]
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        return self.records

    async def _inject(self, fault: Fault, record: FaultRecord) -> None:
        killed = time.monotonic()
        pause = self.rng.uniform(*self.plan.pause_s)
        if fault.kind == "kill":
            await asyncio.to_thread(self.system.group.kill, fault.target)
            await asyncio.sleep(pause)
            await asyncio.to_thread(self.system.group.restart, fault.target)
            record.down_s = round(pause, 1)
            await self._wait_ready(fault.target)
            record.ready_s = round(time.monotonic() - killed, 1)
            service = self.system.service_of(fault.target)
            self._drains.append(asyncio.create_task(self._drain(service, killed, record)))
            return
        if fault.kind in ("kafka-crash", "broker-kill"):
            node = int(fault.target.rsplit("-", 1)[1])
            await asyncio.to_thread(self.stack.kill_kafka, node)
            down = pause if fault.kind == "kafka-crash" else self.plan.broker_down_s
            await asyncio.sleep(down)
            record.down_s = round(down, 1)
            # a broker recovering its logs after SIGKILL on a loaded machine can take minutes
            await asyncio.to_thread(self.stack.restart_kafka, node, self.plan.recovery_timeout_s)
        elif fault.kind == "postgres-crash":
            await asyncio.to_thread(self.stack.kill_postgres)
            await asyncio.sleep(pause)
            record.down_s = round(pause, 1)
            await asyncio.to_thread(self.stack.restart_postgres, self.plan.recovery_timeout_s)
        elif fault.kind == "postgres-restart":
            await asyncio.to_thread(self.stack.restart_postgres, self.plan.recovery_timeout_s)
        else:
            raise ValueError(f"unknown fault {fault.kind}")
        record.ready_s = round(time.monotonic() - killed, 1)
        self._drains.append(asyncio.create_task(self._drain_all(killed, record)))

    async def _wait_ready(self, instance: str) -> None:
        process = self.system.group[instance]
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        while not await asyncio.to_thread(process.ready):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{instance} not ready {self.plan.recovery_timeout_s:.0f}s on")
            await asyncio.sleep(0.25)

    async def _drained(self, service: str, deadline: float) -> None:
        mark = None
        while mark is None:
            with contextlib.suppress(Exception):
                mark = await self.backlog.mark(service)
            if mark is None:
                await asyncio.sleep(0.5)
        while True:
            with contextlib.suppress(Exception):
                if await self.backlog.reached(service, mark):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} did not drain its backlog")
            await asyncio.sleep(0.5)

    async def _drain(self, service: str, killed: float, record: FaultRecord) -> None:
        try:
            await self._drained(service, time.monotonic() + self.plan.recovery_timeout_s)
            record.recovery_s = round(time.monotonic() - killed, 1)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"[:300]

    async def _drain_all(self, killed: float, record: FaultRecord) -> None:
        deadline = time.monotonic() + self.plan.recovery_timeout_s
        try:
            for service in self.system.instances:
                await self._drained(service, deadline)
            record.recovery_s = round(time.monotonic() - killed, 1)
        except Exception as exc:
            record.error = f"{type(exc).__name__}: {exc}"[:300]
