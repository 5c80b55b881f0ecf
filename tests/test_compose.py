"""docker-compose.yml cannot run here (no Docker engine): check it against the code instead."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from prometheus_client import REGISTRY

import carebridge_shared.metrics  # noqa: F401 - registers the metrics the dashboard queries
from carebridge_shared.provisioning import ADMIN_URL_ENV, password_env, service_role
from carebridge_shared.settings import ServiceSettings
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
    # its own least-privilege role, with the password db-provision gave it (ADR 0011)
    provision = SERVICES_IN_COMPOSE["db-provision"]
    assert database.username == service_role(service)
    assert database.password == provision["environment"][password_env(service)]
    assert service in provision["command"]
    assert spec["depends_on"]["db-provision"]["condition"] == "service_completed_successfully"
    advertised = SERVICES_IN_COMPOSE["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{env['KAFKA_BOOTSTRAP_SERVERS']}" in advertised

    for dependency in ("kafka", "postgres"):
        assert spec["depends_on"][dependency]["condition"] == "service_healthy"


def test_db_provision_logs_in_as_the_postgres_admin() -> None:
    provision = SERVICES_IN_COMPOSE["db-provision"]
    assert provision["command"][:3] == ["python", "-m", "carebridge_shared.provisioning"]
    admin = urlparse(provision["environment"][ADMIN_URL_ENV])
    postgres = SERVICES_IN_COMPOSE["postgres"]["environment"]
    assert (admin.hostname, admin.port, admin.path) == ("postgres", 5432, "/carebridge")
    assert (admin.username, admin.password) == ("postgres", postgres["POSTGRES_PASSWORD"])
    assert provision["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_commented_kafka_security_variables_are_settings() -> None:
    """The optional SASL/TLS lines a user uncomments must name real settings."""
    text = (ROOT / "docker-compose.yml").read_text()
    commented = re.findall(r"^\s*#\s*(CAREBRIDGE_KAFKA_[A-Z_]+):", text, flags=re.MULTILINE)
    known = env_settings(ServiceSettings)
    assert commented and not sorted(set(commented) - set(known))
    for name in ("PROTOCOL", "USERNAME", "PASSWORD", "CAFILE"):
        assert any(c.endswith(name) for c in commented), name


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


# --- the optional observability profile (ADR 0010) -----------------------------------------

OBSERVABILITY = ROOT / "observability"


def _mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of a service's bind mounts."""
    found: dict[str, str] = {}
    for volume in SERVICES_IN_COMPOSE[service]["volumes"]:
        host, container = volume.split(":")[:2]
        found[container] = host.removeprefix("./")
    return found


def _exported_metric_names() -> set[str]:
    """Every sample name the services' /metrics can show (carebridge_shared.metrics)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("carebridge_")
        for suffix in suffixes.get(family.type, ("",))
    }


def _metrics_in(expression: str) -> set[str]:
    return set(re.findall(r"\bcarebridge_[a-z_]+\b", expression))


def test_observability_services_are_optional() -> None:
    for name in ("prometheus", "grafana"):
        assert SERVICES_IN_COMPOSE[name]["profiles"] == ["observability"], name
    for service in SERVICES:
        assert "profiles" not in SERVICES_IN_COMPOSE[service]


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    mounts = _mounts("prometheus")
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    config: dict[str, Any] = yaml.safe_load((ROOT / config_path).read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {group["labels"]["service"]: group["targets"] for group in job["static_configs"]}
    for service in SERVICES:
        port = service_settings_class(service).model_fields["http_port"].default
        assert targets[service] == [f"{service}:{port}"], service
        assert f"{port}:{port}" in SERVICES_IN_COMPOSE[service]["ports"]
    rules = list(config["rule_files"])
    assert rules == ["/etc/prometheus/alerts.yml"] and rules[0] in mounts


def test_alert_rules_use_metrics_the_services_export() -> None:
    rules = yaml.safe_load((OBSERVABILITY / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = set().union(*map(_metrics_in, expressions))
    assert used and not used - _exported_metric_names(), sorted(used - _exported_metric_names())


def test_grafana_provisions_prometheus_and_the_dashboard() -> None:
    mounts = _mounts("grafana")
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert urlparse(datasource["url"]).hostname == "prometheus"
    assert f"{urlparse(datasource['url']).port}:" in SERVICES_IN_COMPOSE["prometheus"]["ports"][0]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "carebridge.yml").read_text())[
        "providers"
    ]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    [dashboard_file] = sorted(dashboards.glob("*.json"))
    dashboard = json.loads(dashboard_file.read_text())

    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids are unique"
    queries = [t for panel in panels if panel["type"] != "row" for t in panel["targets"]]
    assert queries
    for query in queries:
        assert query["datasource"]["uid"] == datasource["uid"], query
    used = set().union(*(_metrics_in(query["expr"]) for query in queries))
    missing = used - _exported_metric_names()
    assert not missing, f"dashboard queries metrics no service exports: {sorted(missing)}"
    wanted = {
        "carebridge_outbox_backlog_rows",
        "carebridge_outbox_oldest_age_seconds",
        "carebridge_consumer_lag",
        "carebridge_events_dead_lettered_total",
        "carebridge_ready",
    }
    assert wanted <= used, sorted(wanted - used)
