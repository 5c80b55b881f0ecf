"""Pure helpers: no processes started."""

from __future__ import annotations

from pathlib import Path

import pytest

from carebridge_devstack.endpoints import choose_source, with_database
from carebridge_devstack.kafka import KafkaCluster, random_cluster_id


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
