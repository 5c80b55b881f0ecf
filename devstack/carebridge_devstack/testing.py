"""Helpers for tests and demos that read topics back (no consumer group, no commits)."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from carebridge_contracts import AssessmentCompleted, BaseEvent, Envelope, kafka_headers
from carebridge_contracts.registry import model_for, topic_for, topic_owner
from carebridge_devstack.signer import dev_signer
from carebridge_shared.auth import Role
from carebridge_shared.clock import Clock, SystemClock
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.kafka import KafkaSecurity, ensure_topics, make_producer, security_options
from carebridge_shared.outbox import Outbox
from carebridge_shared.settings import ServiceSettings

if TYPE_CHECKING:
    import asyncpg
    import httpx


async def eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - a test helper's own deadline
    what: str = "condition",
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def until_ready(client: httpx.AsyncClient, *, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Until the app's /readyz answers 200: its consumer joined its group and resolved the
    starting position of every partition, so anything published from now on is received."""

    async def ready() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await eventually(ready, timeout=timeout, what="/readyz")


@asynccontextmanager
async def migrated_pool(
    database_url: str,
    schema: str,
    migrations: Path,
    *,
    bootstrap_servers: str,
    topics: Sequence[str],
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on `schema` with the shared and `migrations` applied, and `topics` created
    (3 partitions, as the services make them); closed on exit."""
    pool = await create_pool(database_url, schema)
    try:
        await migrate(pool, schema, migrations)
        await ensure_topics(bootstrap_servers, list(topics), partitions=3, replication_factor=1)
        yield pool
    finally:
        await pool.close()


def service_context(
    pool: asyncpg.Pool, name: str = "test", *, schema: str | None = None, clock: Clock | None = None
) -> ServiceContext:
    """The context a test's own consumer runtime hands its handlers: `pool`, default settings
    (not the environment's), an outbox writing into `schema` (default: `name`), the clock."""
    return ServiceContext(
        name,
        ServiceSettings.model_construct(),
        pool,
        Outbox(name, schema or name),
        clock or SystemClock(),
    )


def kafka_login_env() -> dict[str, str]:
    """The environment's Kafka login (``CAREBRIDGE_KAFKA_*``), for a child process that is
    given an environment of its own."""
    return {k: v for k, v in os.environ.items() if k.startswith("CAREBRIDGE_KAFKA_")}


def topic_for_type(event_type: str, version: int) -> str:
    return str(topic_for(model_for(event_type, version)))


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def _record(r: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(r.topic, r.partition, r.offset, r.key, r.value or b"", dict(r.headers or ()))


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    where: Callable[[Record], bool] = lambda _r: True,
    expect: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - also bounds the wait for metadata
    settle: float = 0.0,
    security: KafkaSecurity | None = None,
) -> list[Record]:
    """Every record of `topic` from the beginning that matches `where`.

    With `expect`, stops once that many matched (then waits `settle` seconds to catch extras)
    or at `timeout`; without it, stops at the end each partition had when the call started,
    and raises TimeoutError if it cannot get there within `timeout` (part of a topic passed
    off as all of it made a slow read look like lost records).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        # With the default (latest) the initial reset can land after seek_to_beginning and
        # skip every record (seen when reading a topic right after assigning it).
        auto_offset_reset="earliest",
        **security_options(security),
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout
        while not partitions:
            if time.monotonic() > deadline:
                return []
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end_offsets = await consumer.end_offsets(assigned)
        found: list[Record] = []
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if settle_until is not None and now >= settle_until:
                break
            if now >= deadline:
                if expect is None:
                    behind = {
                        tp.partition: (await consumer.position(tp), end_offsets[tp])
                        for tp in assigned
                    }
                    raise TimeoutError(
                        f"read {len(found)} records of {topic} in {timeout:.0f}s but not to the"
                        f" end it had when the read began (partition: (position, end) {behind});"
                        f" the reader fell behind: pass a longer timeout"
                    )
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batches.values():
                found.extend(m for m in map(_record, records) if where(m))
            if expect is None:
                positions = [await consumer.position(tp) for tp in assigned]
                if all(pos >= end_offsets[tp] for pos, tp in zip(positions, assigned, strict=True)):
                    break
            elif len(found) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def produce(
    bootstrap_servers: str,
    envelope: Envelope,
    *,
    topic: str | None = None,
    security: KafkaSecurity | None = None,
) -> None:
    """Publish an envelope straight to Kafka, as a relay would (tests that bypass an outbox)."""
    producer = make_producer(
        bootstrap_servers, client_id="carebridge-test-producer", security=security
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic or str(topic_for_type(envelope.type, envelope.version)),
            value=envelope.to_bytes(),
            key=envelope.subject.encode(),
            headers=kafka_headers(envelope),
        )
    finally:
        await producer.stop()


async def produce_raw(
    bootstrap_servers: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    security: KafkaSecurity | None = None,
) -> None:
    producer = make_producer(
        bootstrap_servers, client_id="carebridge-test-producer", security=security
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers or [])
    finally:
        await producer.stop()


def sample_assessment(patient_id: str, *, state: str = "NY") -> AssessmentCompleted:
    return AssessmentCompleted(
        assessment_id=uuid.uuid4(),
        patient_id=patient_id,
        state=state,
        phq9_total=12,
        phq9_band="moderate",
        gad7_total=6,
        gad7_band="mild",
        item9_positive=False,
        cssrs_imminent_risk=False,
        therapy_interest=True,
        preferred_channel="email",
        completed_at=datetime.now(UTC),
    )


def assessment_request(patient_id: str) -> dict[str, Any]:
    """A valid body for intake's ``POST /v1/assessments``: moderate PHQ-9, mild GAD-7, no risk."""
    return {
        "patient_id": patient_id,
        "state": "NY",
        "phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0],
        "gad7": [1, 1, 1, 1, 1, 1, 0],
        "cssrs": {
            "q1_wish_to_be_dead": False,
            "q2_suicidal_thoughts": False,
            "q3_method": False,
            "q4_intent": False,
            "q5_plan": False,
            "q6_behaviour": False,
        },
        "therapy_interest": True,
        "preferred_channel": "email",
    }


def wrap(
    event: BaseEvent, subject: str, sequence: int = 1, *, producer: str | None = None
) -> Envelope:
    """`event` in an envelope as its topic's owner would publish it (consumers refuse events
    whose producer does not own the topic); `producer` names another, to forge one."""
    return Envelope.wrap(
        event,
        producer=producer or topic_owner(topic_for(event)) or "test",
        subject=subject,
        sequence=sequence,
        correlation_id=uuid.uuid4(),
    )


def spawn_until(command: list[str], marker: bytes) -> subprocess.Popen[bytes]:
    """Start a process and return once it printed `marker` (its output stays on the pipe)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    seen: list[bytes] = []
    for line in iter(process.stdout.readline, b""):
        seen.append(line)
        if marker in line:
            return process
    process.wait(timeout=30)
    tail = b"".join(seen[-40:]).decode(errors="replace")
    raise RuntimeError(f"{command[1]} exited before printing {marker!r}:\n{tail}")


def bearer(role: Role, sub: str, /, **claims: Any) -> dict[str, str]:
    """`Authorization` header with a dev token for (`role`, `sub`), e.g.
    ``client.get(url, headers=bearer("patient", patient_id))``; `claims` override claims
    (``exp=...``, ``aud=...``) to make tokens that must be refused."""
    return {"Authorization": f"Bearer {dev_signer().token(role, sub, **claims)}"}
