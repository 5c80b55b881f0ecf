"""Ops can see a Kafka outage: the intake service runs against a private single-node Kafka that
the test crashes. Assessments are still accepted (they wait in the outbox); the outbox backlog
gauges grow, /readyz turns 503 naming `kafka` and then `outbox_backlog`; after Kafka is back the
backlog drains to 0, /readyz is 200 again and every assessment is on the topic.

The broker is private (own directory and ports): crashing it never touches the shared stack.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from carebridge_contracts import Envelope, Topic
from carebridge_devstack._util import free_port, port_in_use
from carebridge_devstack.demo import CareClient, wait_until
from carebridge_devstack.kafka import KafkaCluster
from carebridge_devstack.processes import ProcessGroup, service_spec
from carebridge_devstack.testing import read_topic
from carebridge_ops.status import collect
from carebridge_shared.kafka import PLAINTEXT

pytestmark = [pytest.mark.integration]

OUTBOX_MAX_AGE_S = 3
# Below the ephemeral range (32768+), away from the shared stack (29092) and the ports other
# tests pick; the first free pair wins.
PORT_CANDIDATES = range(29392, 29592, 10)


def _free_pair() -> int:
    for port in PORT_CANDIDATES:
        if not port_in_use(port) and not port_in_use(port + 1):
            return port
    raise RuntimeError(f"no free port pair in {PORT_CANDIDATES}")


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A plaintext broker without ACLs (what this test crashes is availability, not access):
    its clients say PLAINTEXT explicitly, instead of the session's login."""
    port = _free_pair()
    cluster = KafkaCluster(tmp_path / "kafka", nodes=1, port=port, controller_port=port + 1)
    try:
        cluster.start(timeout=120)
        yield cluster
    finally:
        cluster.stop(timeout=20)
        cluster.purge()


@pytest.fixture
def intake(
    private_kafka: KafkaCluster,
    service_database_url: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[str]:
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": private_kafka.bootstrap_servers,
        "DATABASE_URL": service_database_url("intake"),  # its deploy step, its own role
        "CAREBRIDGE_READY_OUTBOX_MAX_AGE_SECONDS": str(OUTBOX_MAX_AGE_S),
        "CAREBRIDGE_RELAY_POLL_INTERVAL_MS": "200",
        "CAREBRIDGE_INSTANCE_ID": "intake-outage",
        "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    spec = service_spec("intake", port, env)
    spec.withheld = ("CAREBRIDGE_KAFKA_SASL_USERNAME", "CAREBRIDGE_KAFKA_SASL_PASSWORD")
    group = ProcessGroup([spec], tmp_path / "logs")
    group.start()
    try:
        group.wait_ready(timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        group.stop()


def _metrics(url: str) -> dict[str, float]:
    """`name{label=value,...}` -> value of the intake producer's outbox samples."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("producer") == "intake":
                found[sample.name] = sample.value
    return found


def _readyz(url: str) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{url}/readyz", timeout=10)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def _assess(url: str, patient: str) -> None:
    CareClient({"intake": url}).assess(patient)


@pytest.mark.timeout(420)
def test_outbox_backlog_and_readiness_follow_a_kafka_outage(
    private_kafka: KafkaCluster, intake: str
) -> None:
    run = uuid.uuid4().hex[:8]
    before, during = f"o-{run}-before", [f"o-{run}-during-{n}" for n in (1, 2)]

    _assess(intake, before)
    wait_until("the first assessment published", lambda: _backlog(intake) == (0.0, 0.0), 60)
    status, body = _readyz(intake)
    assert status == 200 and body["failing"] == [], body

    private_kafka.kill_node(1)  # SIGKILL: the broker is gone
    kafka_down = wait_until("/readyz naming kafka", lambda: _failing(intake, "kafka"), 30)
    assert kafka_down["checks"]["database"] is True, kafka_down

    for patient in during:
        _assess(intake, patient)  # still accepted: state and event wait in the outbox
    rows, _age = wait_until(
        "the backlog gauge to count both rows", lambda: _backlog_rows_at_least(intake, 2), 30
    )
    assert rows == 2
    aged = wait_until(
        "/readyz naming the outbox backlog", lambda: _failing(intake, "outbox_backlog"), 60
    )
    assert aged["outbox"]["backlog_rows"] == 2, aged
    assert aged["outbox"]["oldest_age_seconds"] > OUTBOX_MAX_AGE_S, aged
    _rows, age = _backlog(intake)
    assert age > OUTBOX_MAX_AGE_S, "the oldest-row gauge grows while Kafka is down"
    [seen] = asyncio.run(collect({"intake": intake}, timeout_s=10))  # `carebridge status`
    assert not seen.ready and {"kafka", "outbox_backlog"} <= set(seen.failing), seen
    assert seen.outbox_rows == 2, seen

    private_kafka.restart_node(1, timeout=120)
    wait_until("the backlog to drain", lambda: _backlog(intake) == (0.0, 0.0), 120)
    ready = wait_until("/readyz to be 200 again", lambda: _ready(intake), 60)
    assert ready["checks"] == {name: True for name in ready["checks"]}, ready
    [seen] = asyncio.run(collect({"intake": intake}, timeout_s=10))
    assert seen.ready and seen.failing == () and seen.outbox_rows == 0, seen

    keys = {p.encode() for p in (before, *during)}
    records = asyncio.run(
        read_topic(
            private_kafka.bootstrap_servers,
            str(Topic.ASSESSMENTS),
            where=lambda r: r.key in keys,
            expect=3,
            settle=1.0,
            security=PLAINTEXT,
        )
    )
    published = {Envelope.from_bytes(r.value).subject for r in records}
    assert published == {before, *during}, "every assessment accepted during the outage arrived"


def _backlog(url: str) -> tuple[float, float]:
    metrics = _metrics(url)
    return (
        metrics.get("carebridge_outbox_backlog_rows", -1.0),
        metrics.get("carebridge_outbox_oldest_age_seconds", -1.0),
    )


def _backlog_rows_at_least(url: str, rows: int) -> tuple[float, float] | None:
    found = _backlog(url)
    return found if found[0] >= rows else None


def _failing(url: str, check: str) -> dict[str, Any] | None:
    status, body = _readyz(url)
    return body if status == 503 and check in body["failing"] else None


def _ready(url: str) -> dict[str, Any] | None:
    status, body = _readyz(url)
    return body if status == 200 else None
