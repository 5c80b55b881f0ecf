"""The Kafka access plan (ADR 0013), derived from the code: who may write, read and join what.
No Kafka here; tests/security/test_kafka_acls.py shows the brokers enforcing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carebridge_contracts import OpsTopic, Topic, dlq_topic
from carebridge_contracts.registry import topic_owner
from carebridge_contracts.services import SERVICES
from carebridge_ops.cli import app
from carebridge_ops.console import OpsError
from carebridge_ops.dead_letters import REDRIVE_TRANSACTIONAL_ID
from carebridge_ops.kafka_access import (
    ANY,
    Principal,
    access_plan,
    consumed_topics,
    markdown_table,
    ops_principal,
    password_variable,
    principal_name,
    service_principal,
)
from carebridge_ops.kafka_provision import Provisioner, binding, confluent_config, provision
from carebridge_shared.kafka import KafkaSecurity, SaslMechanism

SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _topics(principal: Principal, operation: str) -> set[str]:
    return {g.name for g in principal.grants if g.resource == "topic" and g.operation == operation}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_writes_its_topics_and_its_dead_letters_and_reads_what_it_consumes(
    service: str,
) -> None:
    principal = service_principal(service)
    consumed = set(consumed_topics(service))
    owned = {str(t) for t in Topic if topic_owner(t) == service}
    assert principal.name == f"carebridge-{service}"
    assert _topics(principal, "write") == owned | {dlq_topic(t) for t in consumed}
    assert _topics(principal, "read") == consumed
    assert not {t for t in _topics(principal, "read") if t.endswith(".dlq")}, "never a .dlq"
    assert {g.operation for g in principal.grants} <= {"read", "write"}
    groups = [g for g in principal.grants if g.resource == "group"]
    if consumed:
        assert [(g.name, g.pattern, g.operation) for g in groups] == [(service, "prefixed", "read")]


def test_no_two_services_write_the_same_event_topic() -> None:
    writers: dict[str, list[str]] = {}
    for principal in access_plan():
        if principal.role == "ops":
            continue
        for topic in _topics(principal, "write") - {dlq_topic(t) for t in Topic}:
            writers.setdefault(topic, []).append(principal.role)
    assert writers == {str(t): [topic_owner(t)] for t in Topic}


def test_booking_may_not_touch_intake_topic_or_care_plans() -> None:
    booking = service_principal("booking")
    assert str(Topic.ASSESSMENTS) not in _topics(booking, "write")
    assert str(Topic.REFERRALS) not in _topics(booking, "write")  # no forged CareTeamFormed
    assert str(Topic.CARE_PLANS) not in _topics(booking, "read")


def test_ops_reads_every_topic_and_dead_letter_and_owns_the_redrive() -> None:
    ops = ops_principal()
    every = {str(t) for t in Topic} | {dlq_topic(t) for t in Topic}
    assert _topics(ops, "read") == every | {str(OpsTopic.DLQ_REDRIVE_AUDIT)}
    assert _topics(ops, "write") == {ANY}  # redrive, the audit topic, replay --to-topic
    transactions = [g for g in ops.grants if g.resource == "transactional_id"]
    assert [(g.name, g.pattern) for g in transactions] == [(REDRIVE_TRANSACTIONAL_ID, "prefixed")]
    assert {(g.name, g.operation) for g in ops.grants if g.resource == "group"} == {
        (ANY, "read"),
        (ANY, "delete"),
    }


def test_the_plan_is_the_table_in_docs_security_md() -> None:
    text = SECURITY_MD.read_text()
    found = re.search(r"<!-- kafka-acls:start -->\n(.*?)\n<!-- kafka-acls:end -->", text, re.S)
    assert found, "docs/security.md has no kafka-acls block"
    assert found.group(1) == markdown_table(), (
        "docs/security.md's Kafka ACL table differs from the code: paste the output of "
        "`carebridge kafka acls --markdown` between the kafka-acls markers"
    )


def test_the_acls_command_prints_the_plan() -> None:
    result = CliRunner().invoke(app, ["kafka", "acls", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == markdown_table()
    plain = CliRunner().invoke(app, ["kafka", "acls"])
    assert "ALLOW WRITE topic carebridge.booking.appointments" in plain.output


def test_provisioning_help_names_every_input() -> None:
    result = CliRunner().invoke(app, ["kafka", "provision", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for variable in (
        "KAFKA_BOOTSTRAP_SERVERS",
        "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL",
        "CAREBRIDGE_KAFKA_SASL_USERNAME",
        "CAREBRIDGE_KAFKA_SASL_PASSWORD",
        *(password_variable(role) for role in (*SERVICES, "ops")),
    ):
        assert variable in result.output


def test_provisioning_refuses_an_admin_without_a_login() -> None:
    with pytest.raises(OpsError, match="SASL \\(SCRAM or PLAIN\\)"):
        provision("127.0.0.1:1", KafkaSecurity(), {})


@pytest.mark.parametrize(
    ("admin_mechanism", "users_mechanism"),
    [("SCRAM-SHA-256", "SCRAM-SHA-256"), ("SCRAM-SHA-512", "SCRAM-SHA-512"),
     ("PLAIN", "SCRAM-SHA-512")],
)  # fmt: skip
def test_users_get_scram_even_when_the_admin_logs_in_with_plain(
    admin_mechanism: SaslMechanism, users_mechanism: str
) -> None:
    """docker compose's broker knows its admin as a static PLAIN user; the services' users it
    provisions are SCRAM users all the same (a PLAIN user cannot be made at run time)."""
    admin = KafkaSecurity("SASL_PLAINTEXT", admin_mechanism, "carebridge-admin", "s3")
    assert Provisioner("127.0.0.1:1", admin).mechanism == users_mechanism


def test_librdkafka_gets_the_same_login_and_tls_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "carebridge-admin", "s3", cafile=str(ca))
    assert confluent_config("k:9093", security) == {
        "bootstrap.servers": "k:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "carebridge-admin",
        "sasl.password": "s3",
        "ssl.ca.location": str(ca),
    }
    acl = binding(service_principal("booking"), service_principal("booking").grants[0])
    assert acl.principal == f"User:{principal_name('booking')}"
    assert acl.host == "*"
