"""Readiness as ops need it: database, Kafka, relay, consumer and the outbox's oldest row.

`/readyz` and `/metrics` both call `Readiness.report()`, so the readiness and outbox gauges are
fresh at every scrape. The Kafka probe is one metadata request, cached for a moment, so a
probe storm cannot turn into a request storm against the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaClient

from carebridge_shared.consumer import ConsumerRuntime
from carebridge_shared.kafka import KafkaSecurity, make_probe_client
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    OUTBOX_BACKLOG_ROWS,
    OUTBOX_OLDEST_AGE,
    READY,
    last_error,
    note_error,
)
from carebridge_shared.relay import OutboxRelay

log = get_logger(__name__)

DATABASE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class OutboxBacklog:
    rows: int
    oldest_age_seconds: float


async def outbox_backlog(pool: asyncpg.Pool) -> OutboxBacklog:
    """Rows Kafka has not acknowledged yet, and how old the oldest is (database clock)."""
    row = await pool.fetchrow(
        "SELECT count(*) AS rows,"
        " COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest"
        " FROM outbox WHERE published_at IS NULL"
    )
    if row is None:  # pragma: no cover - an aggregate always returns a row
        raise RuntimeError("outbox backlog query returned no row")
    return OutboxBacklog(int(row["rows"]), max(float(row["oldest"]), 0.0))


class KafkaProbe:
    """Is Kafka reachable? One metadata request at most every `cache_s`, bounded by `timeout_s`.
    Returns None when it is, else the error's type name."""

    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str,
        *,
        timeout_s: float = 1.5,
        cache_s: float = 2.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._security = security
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._client: AIOKafkaClient | None = None
        self._checked_at = float("-inf")
        self._problem: str | None = "not_checked"
        self._lock = asyncio.Lock()

    async def problem(self) -> str | None:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_s:
                self._problem = await self._probe()
                self._checked_at = time.monotonic()
            return self._problem

    async def _probe(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._client is None:
                    client = make_probe_client(
                        self._bootstrap_servers, self._client_id, security=self._security
                    )
                    self._client = client
                    await client.bootstrap()  # connects and fetches metadata
                else:
                    await self._client.fetch_all_metadata()
            return None
        except Exception as exc:
            await self.close()  # a fresh bootstrap next time: the brokers may have moved
            note_error("kafka", type(exc).__name__)
            return type(exc).__name__

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


ExtraCheck = tuple[str, Callable[[], Awaitable[str | None]]]
"""A service's own readiness condition: its name, and a probe that says why it fails (None:
it holds)."""

EXTRA_CHECK_TIMEOUT_S = 2.0


@dataclass
class Readiness:
    service: str
    pool: asyncpg.Pool
    relay: OutboxRelay
    runtime: ConsumerRuntime | None
    kafka: KafkaProbe
    outbox_max_age_s: float
    extra: Sequence[ExtraCheck] = ()

    async def report(self) -> dict[str, Any]:
        """Every check (name -> passed), why failing ones fail, the outbox backlog and the
        process's last error: the JSON body of /readyz."""
        (backlog, database_problem), kafka_problem = await asyncio.gather(
            self._backlog(), self.kafka.problem()
        )
        problems: dict[str, str] = {}
        if database_problem is not None:
            problems["database"] = database_problem
        if kafka_problem is not None:
            problems["kafka"] = kafka_problem
        if not self.relay.healthy:
            problems["outbox_relay"] = "not publishing (see last_error)"
        if self.runtime is not None and not self.runtime.joined:
            problems["consumer"] = "not joined to its group or positions unresolved"
        if backlog is None:
            problems["outbox_backlog"] = "unknown (database unreachable)"
        elif backlog.oldest_age_seconds > self.outbox_max_age_s:
            problems["outbox_backlog"] = (
                f"oldest row {backlog.oldest_age_seconds:.0f}s old"
                f" (bound {self.outbox_max_age_s:g}s)"
            )
        names = ["database", "kafka", "outbox_relay"]
        names += ["consumer"] if self.runtime is not None else []
        names += ["outbox_backlog"]
        for name, probe in self.extra:
            names.append(name)
            problem = await self._extra(probe)
            if problem is not None:
                problems[name] = problem
        checks = {name: name not in problems for name in names}
        for name, passed in checks.items():
            READY.labels(self.service, name).set(1 if passed else 0)
        ready = all(checks.values())
        error = last_error()
        return {
            "status": "ready" if ready else "not_ready",
            "service": self.service,
            "checks": checks,
            "failing": [name for name in names if name in problems],
            "problems": problems,
            "outbox": None
            if backlog is None
            else {
                "backlog_rows": backlog.rows,
                "oldest_age_seconds": round(backlog.oldest_age_seconds, 3),
                "max_age_seconds": self.outbox_max_age_s,
            },
            "consumer": None
            if self.runtime is None
            else {"group": self.runtime.group_id, "lag": self.runtime.total_lag},
            "last_error": None
            if error is None
            else {"component": error.component, "error": error.error, "at": error.at.isoformat()},
        }

    @staticmethod
    async def _extra(probe: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            async with asyncio.timeout(EXTRA_CHECK_TIMEOUT_S):
                return await probe()
        except Exception as exc:
            return f"unknown ({type(exc).__name__})"

    async def _backlog(self) -> tuple[OutboxBacklog | None, str | None]:
        """The outbox backlog (its query doubles as the database check), gauges updated."""
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_S):
                backlog = await outbox_backlog(self.pool)
        except Exception as exc:
            return None, type(exc).__name__
        OUTBOX_BACKLOG_ROWS.labels(self.service).set(backlog.rows)
        OUTBOX_OLDEST_AGE.labels(self.service).set(backlog.oldest_age_seconds)
        return backlog, None


async def sample_consumer_lag(
    runtime: ConsumerRuntime, interval_s: float, stop: asyncio.Event
) -> None:
    """Background task: refresh the consumer-lag gauge every `interval_s` while joined."""
    while not stop.is_set():
        if runtime.joined:
            try:
                async with asyncio.timeout(max(interval_s, 5.0)):
                    await runtime.sample_lag()
            except Exception as exc:  # a rebalance or an outage: the next round tries again
                runtime.forget_lag()
                log.info("consumer_lag_not_sampled", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
