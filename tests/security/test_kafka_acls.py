"""Event provenance on real Kafka (ADR 0013): the brokers authorize every request
(StandardAuthorizer, SCRAM principal per service, ACLs derived from the code), and consumers
refuse an event whose producer does not own its topic.

* booking's login may write its own topic, not intake's or referral's (so it cannot publish a
  `CareTeamFormed`), may read what it consumes and nothing else, no dead-letter topic, and may
  not join another service's consumer group; ops reads topics and dead letters;
* a `CareTeamFormed` written with admin rights but naming another producer than referral is
  dead-lettered by every consuming service, each running as its own principal, and grants
  nothing: intake still refuses the clinician it names (403), until referral's genuine event;
* the controller listener is no way round: without the brokers' own login Kafka's admin tool
  gets nothing from it.

They run on the session's stack when it is the native one with SCRAM (`make test`), otherwise
on a private broker provisioned the same way, so they never depend on the user's broker.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from carebridge_contracts import (
    AppointmentBooked,
    CareTeamFormed,
    Topic,
    dlq_topic,
    kafka_headers,
)
from carebridge_devstack._util import port_in_use
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.kafka import KafkaCluster
from carebridge_devstack.kafka_auth import BROKER, MECHANISM, StackLogins, principal
from carebridge_devstack.kafka_config import SaslScram
from carebridge_devstack.kafka_jars import ensure_kafka_libs, find_java
from carebridge_devstack.stack import LOGINS_FILE, Stack, default_stack_dir
from carebridge_devstack.system import isolated_system
from carebridge_devstack.testing import (
    assessment_request,
    bearer,
    eventually,
    read_topic,
    sample_assessment,
    wrap,
)
from carebridge_ops.kafka_access import ADMIN, managed_roles
from carebridge_shared.consumer import DLQ_CONSUMER_GROUP, DLQ_ERROR
from carebridge_shared.kafka import (
    KafkaSecurity,
    TopicsNotProvisioned,
    ensure_topics,
    make_producer,
)

pytestmark = pytest.mark.integration

PORT_CANDIDATES = range(29702, 29802, 10)  # apart from test_kafka_security's 29602..29701


@dataclass(frozen=True)
class SecuredKafka:
    endpoints: StackEndpoints  # its kafka_env: the admin's login and every principal's password
    logins: StackLogins
    controller: str  # host:port of a controller listener

    @property
    def bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap

    def login(self, role: str) -> KafkaSecurity:
        return self.logins.security(role)

    @property
    def admin(self) -> KafkaSecurity:
        return self.logins.security(ADMIN)


@pytest.fixture(scope="module")
def secured_kafka(
    stack_endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredKafka]:
    stack = _native_stack_of(stack_endpoints)
    if stack is not None and stack.logins is not None:
        node = stack.kafka.nodes[0].spec
        yield SecuredKafka(stack_endpoints, stack.logins, f"{node.host}:{node.controller_port}")
        return
    yield from _private_secured_kafka(stack_endpoints, tmp_path_factory.mktemp("acl-kafka"))


def _native_stack_of(endpoints: StackEndpoints) -> Stack | None:
    """The native stack serving `endpoints` (`make test` exports its address), if it is one."""
    directory = default_stack_dir()
    if not (directory / LOGINS_FILE).exists():
        return None
    stack = Stack(directory)
    return stack if stack.kafka_bootstrap == endpoints.kafka_bootstrap else None


def _private_secured_kafka(endpoints: StackEndpoints, base: Path) -> Iterator[SecuredKafka]:
    from carebridge_ops.kafka_provision import provision

    port = next(p for p in PORT_CANDIDATES if not port_in_use(p) and not port_in_use(p + 1))
    logins = StackLogins.load_or_create(base / "logins.json", managed_roles())
    cluster = KafkaCluster(
        base / "kafka",
        port=port,
        controller_port=port + 1,
        sasl=SaslScram(logins.format_time_users(), MECHANISM, authorize=True),
    )
    try:
        cluster.start(timeout=180)
        provision(
            cluster.bootstrap_servers,
            logins.security(ADMIN),
            logins.managed_passwords(),
            echo=lambda _line: None,
        )
        yield SecuredKafka(
            StackEndpoints(
                cluster.bootstrap_servers, endpoints.database_url, endpoints.source, logins.env()
            ),
            logins,
            f"127.0.0.1:{port + 1}",
        )
    finally:
        cluster.stop(timeout=20)
        cluster.purge()


async def _send(
    kafka: SecuredKafka, security: KafkaSecurity, topic: str, value: bytes, key: bytes
) -> None:
    producer = make_producer(kafka.bootstrap, client_id="acl-test", security=security)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def _poll(kafka: SecuredKafka, security: KafkaSecurity, topic: str, group: str) -> None:
    """Join `group` on `topic` and fetch once: raises the broker's refusal if there is one."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **security.client_options(),
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=3000)
    finally:
        await consumer.stop()


def _booked(patient: str) -> bytes:
    starts_at = datetime(2030, 1, 7, 15, tzinfo=UTC)
    event = AppointmentBooked(
        patient_id=patient,
        appointment_id=uuid.uuid4(),
        clinician_id=f"psy-acl-{uuid.uuid4().hex[:6]}",
        clinician_role="psychiatrist",
        visit_type="initial_psychiatric_evaluation",
        state="NY",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
    )
    return wrap(event, patient).to_bytes()


async def test_a_service_writes_only_the_topics_it_owns(secured_kafka: SecuredKafka) -> None:
    booking = secured_kafka.login("booking")
    patient = f"pat-acl-{uuid.uuid4().hex[:8]}"
    # its own topic: accepted (the control that shows the login works)
    await _send(secured_kafka, booking, str(Topic.APPOINTMENTS), _booked(patient), patient.encode())
    # intake's topic: refused by the broker, whatever the record claims
    assessment = wrap(sample_assessment(patient), patient).to_bytes()
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(secured_kafka, booking, str(Topic.ASSESSMENTS), assessment, patient.encode())
    # referral's topic: booking cannot publish the CareTeamFormed that grants access
    care_team = wrap(_care_team(patient, "psy-acl-intruder"), patient, producer="referral")
    with pytest.raises(TopicAuthorizationFailedError):
        await _send(
            secured_kafka, booking, str(Topic.REFERRALS), care_team.to_bytes(), patient.encode()
        )


async def test_a_service_creates_no_topic_and_says_what_to_run(
    secured_kafka: SecuredKafka,
) -> None:
    missing = f"{Topic.APPOINTMENTS}.acl-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TopicsNotProvisioned, match="carebridge kafka provision") as refused:
        await ensure_topics(
            secured_kafka.bootstrap,
            [missing],
            partitions=1,
            replication_factor=1,
            security=secured_kafka.login("booking"),
        )
    assert refused.value.topics == [missing]


async def test_a_service_reads_only_what_it_consumes_and_never_dead_letters(
    secured_kafka: SecuredKafka,
) -> None:
    booking, ops = secured_kafka.login("booking"), secured_kafka.login("ops")
    group = f"booking-acl-{uuid.uuid4().hex[:8]}"  # a group of its own: prefix `booking`
    await _poll(secured_kafka, booking, str(Topic.ASSESSMENTS), group)  # it consumes these
    for topic in (str(Topic.CARE_PLANS), dlq_topic(Topic.ASSESSMENTS), dlq_topic(Topic.CARE_PLANS)):
        with pytest.raises(TopicAuthorizationFailedError):
            await _poll(secured_kafka, booking, topic, f"booking-acl-{uuid.uuid4().hex[:8]}")
    with pytest.raises(GroupAuthorizationFailedError):  # intake's group is not booking's
        await _poll(secured_kafka, booking, str(Topic.REFERRALS), f"intake-{uuid.uuid4().hex}")
    # ops reads every topic and dead-letter topic, in any group
    for topic in (str(Topic.CARE_PLANS), dlq_topic(Topic.ASSESSMENTS)):
        await _poll(secured_kafka, ops, topic, f"ops-acl-{uuid.uuid4().hex[:8]}")


async def test_a_care_team_formed_not_from_referral_changes_nothing(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    patient = f"pat-acl-{uuid.uuid4().hex[:8]}"
    clinician = f"psy-acl-{uuid.uuid4().hex[:8]}"  # treats nobody; the forgery names them
    with isolated_system(secured_kafka.endpoints, tmp_path, label="acl") as (system, _):
        groups = {
            name: system.group[name].spec.env["CAREBRIDGE_CONSUMER_GROUP"]
            for name in ("intake", "booking", "notification")  # those reading the topic
        }
        assert {
            name: system.group[name].spec.env["CAREBRIDGE_KAFKA_SASL_USERNAME"] for name in groups
        } == {name: principal(name) for name in groups}, "each service logs in as itself"
        for name in ("intake", "booking", "referral", "notification"):
            await eventually(
                lambda name=name: _lag_sampled(system.url(name)),  # type: ignore[misc]
                timeout=60,
                what=f"{name}'s consumer lag sampled with its own login",
            )
        async with httpx.AsyncClient(base_url=system.url("intake"), timeout=30) as intake:
            created = await intake.post(
                "/v1/assessments",
                json=assessment_request(patient),
                headers=bearer("patient", patient),
            )
            assert created.status_code == 201, created.text
            url = f"/v1/assessments/{created.json()['assessment_id']}"
            as_clinician = bearer("clinician", clinician)
            assert (await intake.get(url, headers=as_clinician)).status_code == 403

            # (b) written with admin rights, right topic, but not produced by referral
            forged = wrap(_care_team(patient, clinician), patient, producer="booking")
            await _publish(secured_kafka, forged.to_bytes(), patient, kafka_headers(forged))
            letters = await read_topic(
                secured_kafka.bootstrap,
                dlq_topic(Topic.REFERRALS),
                where=lambda r: r.key == patient.encode(),
                expect=len(groups),
                timeout=120,
                settle=2.0,
                security=secured_kafka.login("ops"),  # ops reads dead letters
            )
            assert sorted(r.headers[DLQ_CONSUMER_GROUP].decode() for r in letters) == sorted(
                groups.values()
            ), "every consuming service parks it, once"
            assert {r.headers[DLQ_ERROR].decode() for r in letters} == {
                "ProducerNotTopicOwner: producer 'booking' is not 'referral', the owner of "
                f"{Topic.REFERRALS}"
            }
            assert (await intake.get(url, headers=as_clinician)).status_code == 403
            metrics = (await intake.get("/metrics")).text
            assert (
                'carebridge_events_producer_refused_total{consumer="'
                f'{groups["intake"]}",topic="{Topic.REFERRALS}"}} 1.0'
            ) in metrics

            # the control: referral's own event (same team, same clinician) does grant access
            genuine = wrap(_care_team(patient, clinician), patient, sequence=2)
            assert genuine.producer == "referral"
            await _publish(secured_kafka, genuine.to_bytes(), patient, kafka_headers(genuine))

            async def allowed() -> bool:
                return (await intake.get(url, headers=as_clinician)).status_code == 200

            await eventually(allowed, timeout=120, what="intake applied the genuine event")


async def test_the_controller_listener_gives_nothing_without_the_brokers_login(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    """KRaft lets admin clients talk to controllers directly (`--bootstrap-controller`). A
    plaintext controller listener would make every client there ANONYMOUS, which the brokers'
    own connections need as a super user: an open door. It takes the brokers' SASL/PLAIN
    login instead, so Kafka's own admin tool gets nothing without it."""
    anonymous = tmp_path / "anonymous.properties"
    anonymous.write_text("request.timeout.ms=4000\ndefault.api.timeout.ms=8000\n")
    as_broker = tmp_path / "broker.properties"
    broker_password = secured_kafka.logins.passwords[BROKER]
    as_broker.write_text(
        "default.api.timeout.ms=60000\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{principal(BROKER)}" password="{broker_password}";\n'
    )
    as_admin = tmp_path / "admin.properties"  # the admin is a super user, but not here
    as_admin.write_text(
        "request.timeout.ms=4000\ndefault.api.timeout.ms=8000\nsecurity.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{principal(ADMIN)}" password="{secured_kafka.logins.passwords[ADMIN]}";\n'
    )

    def describe_brokers(config: Path) -> subprocess.CompletedProcess[str]:
        libs = ensure_kafka_libs()
        command = [
            find_java(), "-Xmx128m", "-cp", f"{libs}/*", "kafka.admin.ConfigCommand",
            "--bootstrap-controller", secured_kafka.controller, "--command-config", str(config),
            "--describe", "--entity-type", "brokers", "--entity-default",
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    for refused in (anonymous, as_admin):
        done = await asyncio.to_thread(describe_brokers, refused)
        assert done.returncode != 0, done.stdout
        assert "Default configs for brokers" not in done.stdout
    allowed = await asyncio.to_thread(describe_brokers, as_broker)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr[-2000:]
    assert "Default configs for brokers" in allowed.stdout


async def _lag_sampled(url: str) -> bool:
    """Ready (the Kafka probe, the consumer's join) and the lag gauge read from Kafka."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/readyz")
    report = response.json()
    return response.status_code == 200 and isinstance((report["consumer"] or {}).get("lag"), int)


async def _publish(
    kafka: SecuredKafka, value: bytes, patient: str, headers: list[tuple[str, bytes]]
) -> None:
    producer = make_producer(kafka.bootstrap, client_id="acl-test-admin", security=kafka.admin)
    await producer.start()
    try:
        await producer.send_and_wait(
            str(Topic.REFERRALS), value=value, key=patient.encode(), headers=headers
        )
    finally:
        await producer.stop()


def _care_team(patient: str, clinician: str) -> CareTeamFormed:
    return CareTeamFormed(
        patient_id=patient,
        care_team_id=uuid.uuid5(uuid.NAMESPACE_URL, patient),
        psychiatrist_id=clinician,
        therapist_id=f"th-acl-{uuid.uuid4().hex[:6]}",
    )
