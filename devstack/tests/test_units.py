"""Pure helpers: no processes started."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from carebridge_contracts.services import SERVICES
from carebridge_devstack._util import DevstackError
from carebridge_devstack.endpoints import StackEndpoints, choose_source, with_database
from carebridge_devstack.kafka import KafkaCluster
from carebridge_devstack.kafka_auth import AUTH_ENV, StackLogins, kafka_auth_mode
from carebridge_devstack.kafka_config import STANDARD_AUTHORIZER, SaslScram, random_cluster_id
from carebridge_devstack.processes import ProcessGroup, ProcessSpec
from carebridge_devstack.system import LocalSystem, SystemPorts


def test_with_database_keeps_query() -> None:
    url = "postgresql://postgres@127.0.0.1:25432/carebridge?sslmode=disable"
    assert with_database(url, "t_1") == "postgresql://postgres@127.0.0.1:25432/t_1?sslmode=disable"


def test_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    monkeypatch.delenv("CAREBRIDGE_DEVSTACK", raising=False)
    assert choose_source() == "env"


def test_cluster_id_shape() -> None:
    cid = random_cluster_id()
    assert len(cid) == 22 and not cid.startswith("-")


def test_three_node_config(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, nodes=3, port=29092)
    assert cluster.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    props = cluster.node(2).properties()
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"
    single = KafkaCluster(tmp_path, nodes=1).node(1).properties()
    assert single["offsets.topic.replication.factor"] == "1"
    assert single["auto.create.topics.enable"] == "false"


def test_sasl_and_tls_listener_config(tmp_path: Path) -> None:
    users = SaslScram({"app": "pw-1", "ops": "pw-2"})
    cluster = KafkaCluster(tmp_path, nodes=3, port=29092, sasl=users, tls=True)
    props = cluster.node(2).properties()
    assert props["listeners"] == "SASL_SSL://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095"
    # the controller listener takes the brokers' login too: no anonymous way round (ADR 0013)
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["listener.name.controller.plain.sasl.jaas.config"].endswith(
        'username="app" password="pw-1" user_app="pw-1";'
    )
    assert "authorizer.class.name" not in props  # SASL alone authenticates, authorizes nothing
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    jaas = props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert 'username="app" password="pw-1";' in jaas  # the first user is the brokers' login
    assert props["ssl.keystore.type"] == "PEM"
    assert props["ssl.truststore.location"] == str(tmp_path / "tls" / "ca.pem")
    assert users.format_args() == [
        "--add-scram", "SCRAM-SHA-512=[name=app,password=pw-1]",
        "--add-scram", "SCRAM-SHA-512=[name=ops,password=pw-2]",
    ]  # fmt: skip
    security = cluster.client_security
    assert (security.protocol, security.username, security.password) == ("SASL_SSL", "app", "pw-1")
    assert security.cafile == str(tmp_path / "tls" / "ca.pem")
    sasl_only = KafkaCluster(tmp_path, sasl=users).node(1).properties()
    assert sasl_only["listeners"].startswith("SASL_PLAINTEXT://")
    assert "ssl.keystore.type" not in sasl_only
    with pytest.raises(ValueError, match="only"):
        SaslScram({"app": 'pw"; injected'})


def test_an_authorizing_cluster_denies_what_no_acl_allows(tmp_path: Path) -> None:
    users = SaslScram({"carebridge-broker": "b", "carebridge-admin": "a"}, authorize=True)
    props = KafkaCluster(tmp_path, sasl=users).node(1).properties()
    assert props["authorizer.class.name"] == STANDARD_AUTHORIZER
    assert props["allow.everyone.if.no.acl.found"] == "false"
    # the users made at format time are the super users; every other one is provisioned
    assert props["super.users"] == "User:carebridge-broker;User:carebridge-admin"
    assert props["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    KafkaCluster(tmp_path, sasl=users).node(1).write_config()
    config = tmp_path / "node-1" / "server.properties"
    assert config.stat().st_mode & 0o777 == 0o600  # it holds the brokers' password


def test_kafka_auth_is_scram_unless_none_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert kafka_auth_mode() == "scram"
    monkeypatch.setenv(AUTH_ENV, "None")
    assert kafka_auth_mode() == "none"
    monkeypatch.setenv(AUTH_ENV, "plaintext")
    with pytest.raises(DevstackError, match="CAREBRIDGE_KAFKA_AUTH=none"):
        kafka_auth_mode()


def test_stack_logins_are_random_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "kafka-logins.json"
    logins = StackLogins.load_or_create(path, ["booking", "ops"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert StackLogins.load_or_create(path, ["booking", "ops"]) == logins
    assert len(set(logins.passwords.values())) == 4  # admin, broker, booking, ops
    assert StackLogins.load_or_create(tmp_path / "other.json", ["booking"]) != logins
    env = logins.env()
    assert env["CAREBRIDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["CAREBRIDGE_KAFKA_SASL_USERNAME"] == "carebridge-admin"
    assert env["CAREBRIDGE_BOOKING_KAFKA_PASSWORD"] == logins.passwords["booking"]
    assert logins.passwords["broker"] not in env.values()  # the brokers' login stays theirs
    assert list(logins.format_time_users()) == ["carebridge-broker", "carebridge-admin"]


def test_each_service_logs_in_as_itself_and_sees_no_other_password(tmp_path: Path) -> None:
    logins = StackLogins.load_or_create(tmp_path / "logins.json", [*SERVICES, "ops"])
    endpoints = StackEndpoints(
        "127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", "native", logins.env()
    )
    system = LocalSystem(endpoints, tmp_path, ports=SystemPorts.free())
    for service in SERVICES:
        spec = system.group[service].spec
        assert spec.env["CAREBRIDGE_KAFKA_SASL_USERNAME"] == f"carebridge-{service}"
        assert spec.env["CAREBRIDGE_KAFKA_SASL_PASSWORD"] == logins.passwords[service]
        assert set(spec.withheld) >= {
            f"CAREBRIDGE_{role.upper()}_KAFKA_PASSWORD" for role in (*SERVICES, "ops")
        }
    # what a child process really gets: a stand-in prints its environment
    spec = system.group["booking"].spec
    probe = ProcessSpec(
        "probe",
        [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        env=spec.env,
        withheld=spec.withheld,
    )
    group = ProcessGroup([probe], tmp_path / "probe-logs")
    group.start()
    group["probe"].process.wait(timeout=30)  # type: ignore[union-attr]
    group.stop()
    seen = json.loads(wait_for_line(tmp_path / "probe-logs" / "probe.log"))
    assert seen["CAREBRIDGE_KAFKA_SASL_USERNAME"] == "carebridge-booking"
    assert seen["CAREBRIDGE_KAFKA_SASL_PASSWORD"] == logins.passwords["booking"]
    others = {p for role, p in logins.passwords.items() if role != "booking"}
    assert not others & set(seen.values()), "another principal's password reached booking"


def wait_for_line(path: Path, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip().splitlines()[-1]
        time.sleep(0.05)
    raise AssertionError(f"{path} stayed empty")
