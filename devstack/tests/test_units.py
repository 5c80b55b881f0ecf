"""Pure helpers: no processes started."""

from __future__ import annotations

from pathlib import Path

import pytest

from carebridge_devstack.endpoints import choose_source, with_database
from carebridge_devstack.kafka import KafkaCluster, SaslScram, random_cluster_id


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
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
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
