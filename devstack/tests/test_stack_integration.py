"""The native stack for real: Kafka and PostgreSQL processes, produce/consume, SQL.

With ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` set, only connectivity to that
existing stack is tested (it is not ours to stop).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from carebridge_devstack._util import free_port, pid_alive, port_in_use, processes_mentioning
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.stack import Stack
from carebridge_ops.kafka_access import ADMIN
from carebridge_shared.kafka import KafkaSecurity, security_options

pytestmark = pytest.mark.integration

Login = KafkaSecurity | None  # None: the environment's (the session stack's admin)


async def _create_topic(
    bootstrap: str, topic: str, partitions: int = 3, rf: int = 1, *, security: Login = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security_options(security))
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=rf)]
        )
    finally:
        await admin.close()


async def _produce_consume(
    bootstrap: str, topic: str, value: bytes, *, security: Login = None
) -> None:
    """Produce one record with acks=all, then read it back with a new consumer group."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        **security_options(security),
    )
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=b"patient-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security_options(security),
    )
    await consumer.start()
    try:
        seen: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 30
        while (meta.partition, meta.offset, value) not in seen:
            assert time.monotonic() < deadline, f"record not consumed; saw {seen}"
            batch = await consumer.getmany(timeout_ms=1000)
            seen += [(r.partition, r.offset, r.value) for rs in batch.values() for r in rs]
        await consumer.commit()
    finally:
        await consumer.stop()


async def _roundtrip(
    bootstrap: str, topic: str, partitions: int = 3, rf: int = 1, *, security: Login = None
) -> None:
    await _create_topic(bootstrap, topic, partitions, rf, security=security)
    await _produce_consume(bootstrap, topic, b"hello", security=security)


def _admin(stack: Stack) -> KafkaSecurity:
    """A private stack's admin login (SCRAM and ACLs by default, ADR 0013)."""
    assert stack.logins is not None
    return stack.logins.security(ADMIN)


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_kafka_produce_consume(
    stack_endpoints: StackEndpoints, unique_topic_prefix: str
) -> None:
    await _roundtrip(stack_endpoints.kafka_bootstrap, f"{unique_topic_prefix}roundtrip")


async def test_postgres_answers(stack_endpoints: StackEndpoints) -> None:
    assert await _select_one(stack_endpoints.database_url) == 1


async def test_fresh_database_is_empty_and_usable(fresh_database_url: str) -> None:
    assert fresh_database_url.rsplit("/", 1)[-1].startswith("t_")
    conn = await asyncpg.connect(fresh_database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
        assert await conn.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await conn.close()


# ----------------------------------------------------------------- lifecycle (native only)


@pytest.fixture
def private_stack() -> Iterator[Stack]:
    """A second, throw-away native stack on free ports in its own directory (it runs even
    when the session's tests use an existing stack: it never touches that one)."""
    directory = Path(tempfile.mkdtemp(prefix="carebridge-stack-"))
    directory.chmod(0o755)  # PostgreSQL runs as an unprivileged user and must get in
    kafka_port = free_port()
    stack = Stack(
        directory,
        kafka_port=kafka_port,
        kafka_controller_port=free_port(),
        pg_port=free_port(),
    )
    try:
        yield stack
    finally:
        stack.down(purge=True)
        shutil.rmtree(directory, ignore_errors=True)


def _all_pids(stack: Stack) -> list[int]:
    pids = stack.pids()
    return pids["kafka"] + pids["postgres"]


async def test_up_is_idempotent_and_down_leaves_nothing(private_stack: Stack) -> None:
    stack = private_stack
    first = stack.up()
    assert not first.kafka_reused and not first.postgres_reused
    assert first.kafka_ready_s > 0 and first.postgres_ready_s > 0
    assert first.total_s >= max(first.kafka_ready_s, first.postgres_ready_s)
    assert stack.env_file.read_text().splitlines()[:5] == [
        f"KAFKA_BOOTSTRAP_SERVERS={stack.kafka_bootstrap}",
        f"DATABASE_URL={stack.database_url}",
        "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        "CAREBRIDGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
        "CAREBRIDGE_KAFKA_SASL_USERNAME=carebridge-admin",
    ]
    assert stack.env_file.stat().st_mode & 0o777 == 0o600  # it holds the Kafka passwords
    pids = _all_pids(stack)
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)

    second = stack.up()
    assert second.kafka_reused and second.postgres_reused
    assert _all_pids(stack) == pids
    assert second.total_s < first.total_s

    await _roundtrip(stack.kafka_bootstrap, "lifecycle", security=_admin(stack))
    assert await _select_one(stack.database_url) == 1

    assert stack.down() is True
    assert not any(pid_alive(p) for p in pids)
    assert processes_mentioning(str(stack.dir) + "/") == []
    assert not port_in_use(stack.kafka.nodes[0].spec.port)
    assert not port_in_use(stack.postgres.port)
    assert not stack.env_file.exists()
    assert stack.down() is True  # idempotent


async def test_fault_helpers_kill_and_restart(private_stack: Stack) -> None:
    stack = private_stack
    stack.up()
    old_kafka = stack.pids()["kafka"][0]
    stack.kill_kafka(1, signal.SIGKILL)
    assert not pid_alive(old_kafka)
    assert not stack.kafka.is_running()
    stack.restart_kafka(1)
    assert stack.kafka.is_healthy()
    assert stack.pids()["kafka"][0] != old_kafka

    old_pg = stack.pids()["postgres"][0]
    stack.restart_postgres()  # clean: pg_ctl stop -m fast, start
    assert stack.postgres.is_healthy()
    assert stack.pids()["postgres"][0] != old_pg

    crashed_pg = stack.pids()["postgres"][0]
    stack.kill_postgres(signal.SIGKILL)  # crash: recovery on the next start
    assert not pid_alive(crashed_pg)
    stack.restart_postgres()
    assert await _select_one(stack.database_url) == 1

    await _roundtrip(stack.kafka_bootstrap, "after-restart", security=_admin(stack))
    stack.down()
    assert _all_pids(stack) == []


async def test_three_node_cluster() -> None:
    directory = Path(tempfile.mkdtemp(prefix="carebridge-cluster-"))
    os.chmod(directory, 0o755)
    # below the ephemeral range (32768+), where a client socket could hold a port we want
    base = 20000 + (os.getpid() % 400) * 12
    stack = Stack(directory, kafka_port=base, kafka_controller_port=base + 1, kafka_nodes=3,
                  pg_port=free_port())  # fmt: skip
    try:
        stack.up()
        assert len(stack.pids()["kafka"]) == 3
        admin = _admin(stack)
        await _roundtrip(stack.kafka_bootstrap, "replicated", rf=3, security=admin)
        stack.kill_kafka(2)  # one of three down: min.insync.replicas=2 is still met
        await _produce_consume(stack.kafka_bootstrap, "replicated", b"degraded", security=admin)
        stack.restart_kafka(2)
        assert stack.kafka.is_healthy()
        await _produce_consume(stack.kafka_bootstrap, "replicated", b"healed", security=admin)
    finally:
        stack.down(purge=True)
        shutil.rmtree(directory, ignore_errors=True)
    assert processes_mentioning(str(directory) + "/") == []
