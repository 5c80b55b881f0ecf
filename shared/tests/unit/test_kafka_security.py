"""Kafka security settings -> the options every client gets (ADR 0011)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from faststream.kafka.security import parse_security
from faststream.security import SASLScram256, SASLScram512

from carebridge_devstack.kafka_tls import ensure_dev_certificates
from carebridge_shared.kafka import (
    PLAINTEXT,
    KafkaSecurity,
    KafkaSettingsError,
    kafka_client_options,
)
from carebridge_shared.settings import ServiceSettings


def settings_from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> ServiceSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServiceSettings()


def test_plaintext_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):  # `make test` exports the dev stack's admin login
        if name.startswith("CAREBRIDGE_KAFKA_"):
            monkeypatch.delenv(name)
    assert KafkaSecurity.from_settings(ServiceSettings()) == PLAINTEXT
    assert PLAINTEXT.client_options() == {"security_protocol": "PLAINTEXT"}
    assert PLAINTEXT.faststream_security() is None


def test_sasl_scram_settings_reach_every_kind_of_client(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_env(
        monkeypatch,
        KAFKA_BOOTSTRAP_SERVERS="k1:9096,k2:9096",
        CAREBRIDGE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        CAREBRIDGE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        CAREBRIDGE_KAFKA_SASL_USERNAME="booking",
        CAREBRIDGE_KAFKA_SASL_PASSWORD="hunter2",
    )
    assert "hunter2" not in repr(settings)
    security = KafkaSecurity.from_settings(settings)
    assert "hunter2" not in repr(security) and "hunter2" not in security.describe()

    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "booking",
        "sasl_plain_password": "hunter2",
    }
    assert security.client_options() == expected  # aiokafka producers, consumers, admin
    assert kafka_client_options(settings) == {"bootstrap_servers": "k1:9096,k2:9096", **expected}
    broker_security = security.faststream_security()  # FastStream's KafkaBroker
    assert isinstance(broker_security, SASLScram256)
    assert parse_security(broker_security) == {**expected, "ssl_context": None}


def test_sasl_over_tls_trusts_the_given_ca_and_checks_the_host(tmp_path: Path) -> None:
    ca = ensure_dev_certificates(tmp_path, ["127.0.0.1"]).ca
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "u", "p", cafile=str(ca))
    context = security.client_options()["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "carebridge dev Kafka CA"),),)
    ]
    broker_security = security.faststream_security()
    assert isinstance(broker_security, SASLScram512) and broker_security.use_ssl
    assert parse_security(broker_security)["security_protocol"] == "SASL_SSL"


def test_tls_without_sasl_and_with_a_client_certificate(tmp_path: Path) -> None:
    files = ensure_dev_certificates(tmp_path, ["127.0.0.1"])
    security = KafkaSecurity(
        "SSL", cafile=str(files.ca), certfile=str(files.keystore), keyfile=str(files.keystore)
    )
    options = security.client_options()
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert parse_security(security.faststream_security())["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("security", "says"),
    [
        (dict(protocol="SASL_SSL", username="u"), "CAREBRIDGE_KAFKA_SASL_PASSWORD"),
        (dict(protocol="SASL_PLAINTEXT", password="p"), "CAREBRIDGE_KAFKA_SASL_USERNAME"),
        (dict(protocol="SASL_PLAINTEXT", username="u", password="p", cafile="ca.pem"), "TLS"),
        (dict(protocol="PLAINTEXT", certfile="c.pem"), "choose SSL or SASL_SSL"),
        (dict(protocol="SSL", keyfile="k.pem"), "needs CAREBRIDGE_KAFKA_SSL_CERTFILE"),
    ],
)
def test_contradicting_settings_are_refused_at_start(security: dict[str, str], says: str) -> None:
    with pytest.raises(KafkaSettingsError, match=says):
        KafkaSecurity(**security)  # type: ignore[arg-type]


def test_a_missing_ca_file_says_which_setting_to_fix(tmp_path: Path) -> None:
    security = KafkaSecurity("SSL", cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(KafkaSettingsError, match="CAREBRIDGE_KAFKA_SSL_CAFILE"):
        security.client_options()
