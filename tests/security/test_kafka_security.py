"""Kafka with SASL/SCRAM, and with SASL/SCRAM over TLS (ADR 0011): services log in, publish
and consume end to end; a wrong password, a client that does not log in and (TLS) a client that
does not trust the broker's CA are refused with an error that says why.

Each broker is private (own directory and ports; a SASL_PLAINTEXT or SASL_SSL listener with a
throw-away CA; SCRAM-SHA-512 users stored when its storage is formatted), so the shared dev
broker is never touched.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI

from carebridge_booking.app import build as build_booking
from carebridge_booking.settings import BookingSettings
from carebridge_contracts import Topic, parse
from carebridge_devstack._util import port_in_use
from carebridge_devstack.kafka import KafkaCluster
from carebridge_devstack.kafka_config import SaslScram
from carebridge_devstack.testing import (
    assessment_request,
    bearer,
    eventually,
    read_topic,
    until_ready,
)
from carebridge_intake.app import IntakeSettings
from carebridge_intake.app import build as build_intake
from carebridge_shared.kafka import PLAINTEXT, KafkaUnreachable, ensure_topics, make_producer

pytestmark = pytest.mark.integration

USER, PASSWORD = "carebridge", "sasl-test-secret"
# Below the ephemeral range and apart from the shared stack (29092) and the private brokers of
# other tests (29392..29591); the first free pair wins.
PORT_CANDIDATES = range(29602, 29702, 10)

ServiceUrl = Callable[[str], str]


@pytest.fixture(scope="module", params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl_kafka(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    port = next(p for p in PORT_CANDIDATES if not port_in_use(p) and not port_in_use(p + 1))
    base: Path = tmp_path_factory.mktemp("sasl-kafka")
    cluster = KafkaCluster(
        base,
        port=port,
        controller_port=port + 1,
        sasl=SaslScram({USER: PASSWORD}),
        tls=request.param == "SASL_SSL",
    )
    try:
        cluster.start(timeout=120)
        yield cluster
    finally:
        cluster.stop(timeout=20)
        cluster.purge()


def sasl_settings(cluster: KafkaCluster, password: str = PASSWORD) -> dict[str, Any]:
    """The settings a service reads from CAREBRIDGE_KAFKA_* to reach `cluster`."""
    return {
        "kafka_bootstrap_servers": cluster.bootstrap_servers,
        "kafka_security_protocol": cluster.client_security.protocol,
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": password,
        "kafka_ssl_cafile": cluster.client_security.cafile,
        "relay_poll_interval_ms": 100,
        "consumer_group": f"sasl-test-{uuid.uuid4().hex[:8]}",
    }


@asynccontextmanager
async def running(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=f"http://{name}", timeout=60) as client,
    ):
        await until_ready(client)  # includes the Kafka probe, which logs in too
        yield client


async def test_services_publish_and_consume_over_sasl_scram(
    sasl_kafka: KafkaCluster,
    service_database_url: ServiceUrl,
) -> None:
    intake_app = build_intake(
        IntakeSettings(database_url=service_database_url("intake"), **sasl_settings(sasl_kafka))
    )
    booking_app = build_booking(
        BookingSettings(
            database_url=service_database_url("booking"),
            clinician_seed_file="",
            **sasl_settings(sasl_kafka),
        )
    )
    async with running(booking_app, "booking"), running(intake_app, "intake") as intake:
        patient = f"pat-{uuid.uuid4()}"
        response = await intake.post(
            "/v1/assessments", json=assessment_request(patient), headers=bearer("patient", patient)
        )
        assert response.status_code == 201, response.text

        # the relay published it with the SASL login ...
        records = await read_topic(
            sasl_kafka.bootstrap_servers,
            str(Topic.ASSESSMENTS),
            where=lambda r: r.key == patient.encode(),
            expect=1,
            security=sasl_kafka.client_security,
        )
        assert [parse(r.value)[0].type for r in records] == ["AssessmentCompleted"]

        # ... and booking's consumer, logged in the same way, applied it
        booking_pool: asyncpg.Pool = booking_app.state.context.pool

        async def consumed() -> bool:
            done = await booking_pool.fetchval(
                "SELECT assessment_completed_at IS NOT NULL FROM patient_eligibility"
                " WHERE patient_id = $1",
                patient,
            )
            return bool(done)

        await eventually(consumed, timeout=60, what="booking consumed the assessment")


async def test_a_wrong_password_stops_the_service_with_a_clear_error(
    sasl_kafka: KafkaCluster, service_database_url: ServiceUrl
) -> None:
    app = build_intake(
        IntakeSettings(
            database_url=service_database_url("intake"),
            **sasl_settings(sasl_kafka, password="not-the-password"),
        )
    )
    with pytest.raises(KafkaUnreachable) as refused:
        async with app.router.lifespan_context(app):
            pass
    message = str(refused.value)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in message
    assert f"as {USER!r}" in message and "not-the-password" not in message


async def test_a_client_that_does_not_log_in_is_refused(sasl_kafka: KafkaCluster) -> None:
    with pytest.raises(KafkaUnreachable) as refused:
        await ensure_topics(
            sasl_kafka.bootstrap_servers,
            [str(Topic.ASSESSMENTS)],
            partitions=1,
            replication_factor=1,
            security=PLAINTEXT,
        )
    assert "with PLAINTEXT" in str(refused.value)

    producer = make_producer(sasl_kafka.bootstrap_servers, "plaintext-intruder", security=PLAINTEXT)
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()


@pytest.mark.parametrize("sasl_kafka", ["SASL_SSL"], indirect=True)
async def test_over_tls_a_client_that_does_not_trust_the_brokers_ca_is_refused(
    sasl_kafka: KafkaCluster,
) -> None:
    system_cas_only = dataclasses.replace(sasl_kafka.client_security, cafile="")
    with pytest.raises(KafkaUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        await ensure_topics(
            sasl_kafka.bootstrap_servers,
            [str(Topic.ASSESSMENTS)],
            partitions=1,
            replication_factor=1,
            security=system_cas_only,
        )
