"""How far behind the system is: consumer-group lag and unpublished outbox rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from carebridge_contracts.services import SERVICES
from carebridge_shared.kafka import security_options

SCHEMAS = SERVICES  # each service keeps its tables in a schema named after it


def consumer_groups(log_dir: Path) -> dict[str, list[str]]:
    """Consumer group -> subscribed topics, as the services logged them at start-up."""
    groups: dict[str, set[str]] = {}
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"consumer_started"' not in line:
                continue
            with contextlib.suppress(ValueError, TypeError, KeyError):
                record = json.loads(line)
                groups.setdefault(str(record["group"]), set()).update(record["topics"])
    return {group: sorted(topics) for group, topics in sorted(groups.items())}


@dataclass(frozen=True)
class Mark:
    """A point to drain to: end offsets of a group's topics and the last outbox id."""

    ends: dict[TopicPartition, int]
    outbox_id: int


class Backlog:
    """Reads lag and outbox backlog; reconnects after broker or database restarts."""

    def __init__(self, bootstrap: str, database_url: str, groups: dict[str, list[str]]) -> None:
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.groups = groups
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="chaos-lag",
                                        **security_options())  # fmt: skip
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False,
                                        **security_options())  # fmt: skip
            try:
                await admin.start()
                await consumer.start()
            except Exception:
                with contextlib.suppress(Exception):
                    await admin.close()
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def _ends(self, topics: list[str]) -> dict[TopicPartition, int]:
        """End offsets of every partition of `topics`; LookupError for a topic the cluster
        does not describe (yet), rather than a lag of 0 for it.

        The partitions come from the admin client: this consumer subscribes to nothing, and
        aiokafka's bootstrap asks for the metadata of no topic, so `partitions_for_topic` stays
        None until the first periodic refresh (5 minutes): every lag read as 0 until then
        (issue 16), and a short chaos run "drained" before the services had consumed."""
        admin, consumer = await self._clients()
        partitions: list[TopicPartition] = []
        missing: list[str] = []
        for described in await admin.describe_topics(sorted(set(topics))):
            if described["error_code"] or not described["partitions"]:
                missing.append(described["topic"])
            partitions += [
                TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]
            ]
        if missing:
            raise LookupError(f"cannot measure the lag on {missing}: the cluster does not "
                              f"describe them (error or no partitions)")  # fmt: skip
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends

    async def _outbox_max(self, schema: str, *, unpublished_up_to: int | None = None) -> int:
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            if unpublished_up_to is None:
                value = await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {schema}.outbox")
            else:
                value = await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL AND id <= $1",
                    unpublished_up_to,
                )
            return int(value)
        finally:
            await conn.close()

    async def mark(self, service: str) -> Mark:
        """Where `service` has to get to: what is on its topics and in its outbox now."""
        try:
            ends = await self._ends(self.groups.get(service, []))
        except Exception:
            await self.close()
            raise
        return Mark(ends, await self._outbox_max(service))

    async def reached(self, service: str, mark: Mark) -> bool:
        """Consumed up to `mark` (committed offsets) and published its outbox up to `mark`."""
        if await self._outbox_max(service, unpublished_up_to=mark.outbox_id):
            return False
        if not mark.ends:
            return True
        try:
            admin, _ = await self._clients()
            committed = await admin.list_consumer_group_offsets(service)
        except Exception:
            await self.close()
            raise
        for tp, end in mark.ends.items():
            meta = committed.get(tp)
            if end > 0 and (meta is None or meta.offset < end):
                return False
        return True

    async def totals(self) -> dict[str, int]:
        """Lag of every group and unpublished rows of every outbox right now."""
        result: dict[str, int] = {}
        for service in SCHEMAS:
            mark = await self.mark(service)
            lag = 0
            if mark.ends:
                admin, _ = await self._clients()
                committed = await admin.list_consumer_group_offsets(service)
                for tp, end in mark.ends.items():
                    meta = committed.get(tp)
                    lag += max(0, end - (meta.offset if meta is not None else 0))
            result[f"{service}.lag"] = lag
            result[f"{service}.unpublished"] = await self._outbox_max(
                service, unpublished_up_to=mark.outbox_id
            )
        return result


Reading = Callable[[], Awaitable[dict[str, int]]]


async def wait_until_quiet(
    read: Reading, *, within_s: float, interval_s: float = 1.0, quiet_readings: int = 2
) -> dict[str, int]:
    """Read until `quiet_readings` readings in a row are all zero, `interval_s` apart; returns
    the last reading (not all zero when `within_s` ran out). A reading that fails (a broker or
    database still restarting) counts as not quiet.

    One quiet reading is not enough: work that one part finishes can start work in another
    after it was read (a confirmation the dispatcher sends writes a NotificationSent outbox
    row after the outbox was found empty), so the system is quiet only when nothing moved
    between two complete readings.
    """
    deadline = time.monotonic() + within_s
    reading: dict[str, int] = {}
    quiet = 0
    while True:
        try:
            reading = await read()
        except Exception as exc:
            reading, quiet = {f"unreadable: {type(exc).__name__}": 1}, 0
        else:
            quiet = 0 if any(reading.values()) else quiet + 1
        if quiet >= quiet_readings or time.monotonic() >= deadline:
            return reading
        await asyncio.sleep(interval_s)
