"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from carebridge_shared.settings_doc import SERVICES, env_settings, service_settings_class

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_IN_COMPOSE: dict[str, Any] = COMPOSE["services"]


def test_infrastructure_images_and_healthchecks() -> None:
    assert SERVICES_IN_COMPOSE["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES_IN_COMPOSE["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES_IN_COMPOSE["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "smtp"):
        assert "healthcheck" in SERVICES_IN_COMPOSE[name], name


@pytest.mark.parametrize("service", SERVICES)
def test_service_matches_its_settings(service: str) -> None:
    spec = SERVICES_IN_COMPOSE[service]
    env: dict[str, str] = {k: str(v) for k, v in spec["environment"].items()}
    known = env_settings(service_settings_class(service))
    unknown = sorted(set(env) - set(known))
    assert not unknown, f"{service}: variables no setting reads: {unknown}"

    port = int(env["CAREBRIDGE_HTTP_PORT"])
    assert port == service_settings_class(service).model_fields["http_port"].default
    assert f"{port}:{port}" in spec["ports"]
    assert env["CAREBRIDGE_HTTP_HOST"] == "0.0.0.0"
    health = " ".join(spec["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{port}/readyz", health), health
    assert spec["command"] == ["python", "-m", f"carebridge_{service}"]
    assert spec["build"]["args"]["SERVICE"] == service

    database = urlparse(env["DATABASE_URL"])
    assert database.hostname == "postgres" and database.port == 5432
    assert database.path == "/" + SERVICES_IN_COMPOSE["postgres"]["environment"]["POSTGRES_DB"]
    assert database.password == SERVICES_IN_COMPOSE["postgres"]["environment"]["POSTGRES_PASSWORD"]
    advertised = SERVICES_IN_COMPOSE["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{env['KAFKA_BOOTSTRAP_SERVERS']}" in advertised

    for dependency in ("kafka", "postgres"):
        assert spec["depends_on"][dependency]["condition"] == "service_healthy"


def test_notification_reaches_the_smtp_sink() -> None:
    env = SERVICES_IN_COMPOSE["notification"]["environment"]
    smtp = SERVICES_IN_COMPOSE["smtp"]
    assert env["CAREBRIDGE_SMTP_HOST"] == "smtp"
    assert env["CAREBRIDGE_SMTP_PORT"] in " ".join(smtp["command"])
    assert (
        SERVICES_IN_COMPOSE["notification"]["depends_on"]["smtp"]["condition"] == "service_healthy"
    )


def test_settings_load_from_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in SERVICES:
        for key, value in SERVICES_IN_COMPOSE[service]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = service_settings_class(service)()
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert str(settings.http_port) == str(
            SERVICES_IN_COMPOSE[service]["environment"]["CAREBRIDGE_HTTP_PORT"]
        )


def test_dockerfile_installs_the_selected_service() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'uv sync --frozen --no-dev --package "carebridge-${SERVICE}"' in dockerfile
    assert "FROM python:3.11" in dockerfile
