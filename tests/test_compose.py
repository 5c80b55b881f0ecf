"""docker-compose.yml checked against the code, as text (fast, no Docker engine needed).

`make compose-test` runs the file for real (containers/tests); these checks keep the file, the
settings and the image table (carebridge_devstack.images) in step on every `make test`.
"""

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
from carebridge_contracts.services import SERVICES
from carebridge_devstack.compose import published_ports
from carebridge_devstack.images import IMAGES
from carebridge_ops.kafka_access import (
    ADMIN_PRINCIPAL,
    managed_roles,
    password_variable,
    principal_name,
)
from carebridge_ops.settings_doc import env_settings, service_settings_class
from carebridge_shared.provisioning import ADMIN_URL_ENV, password_env, service_role
from carebridge_shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_IN_COMPOSE: dict[str, Any] = COMPOSE["services"]
PUBLISHED = published_ports(ROOT / "docker-compose.yml")


def test_infrastructure_images_and_healthchecks() -> None:
    assert SERVICES_IN_COMPOSE["kafka"]["image"].endswith(":-apache/kafka:4.1.1}")
    assert SERVICES_IN_COMPOSE["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES_IN_COMPOSE["postgres"]["image"].endswith(":-postgres:15}")
    for name in ("kafka", "postgres", "smtp"):
        assert "healthcheck" in SERVICES_IN_COMPOSE[name], name


def test_public_images_are_the_defaults_and_each_has_its_variable() -> None:
    """A user with a registry runs exactly the file they read; `make compose-test` overrides
    each image through the variable carebridge_devstack.images names (ADR 0016)."""
    for name in ("kafka", "postgres", "prometheus"):
        spec = IMAGES[name]
        assert SERVICES_IN_COMPOSE[name]["image"] == f"${{{spec.variable}:-{spec.public}}}"
    python = IMAGES["python"]
    for name, spec in SERVICES_IN_COMPOSE.items():
        if "build" in spec:
            assert (
                spec["build"]["args"]["PYTHON_IMAGE"] == f"${{{python.variable}:-{python.public}}}"
            )
            assert spec["image"].startswith("carebridge/"), name
    assert SERVICES_IN_COMPOSE["grafana"]["image"].startswith("${CAREBRIDGE_GRAFANA_IMAGE:-")


def test_ports_are_published_on_loopback_each_with_its_variable() -> None:
    """Every published port is 127.0.0.1:${CAREBRIDGE_COMPOSE_<NAME>_PORT:-<documented>}, so a
    compose stack can run beside a native one (published_ports refuses any other form)."""
    publishing = {name for name, spec in SERVICES_IN_COMPOSE.items() if spec.get("ports")}
    assert set(PUBLISHED) == publishing
    variables = [p.variable for p in PUBLISHED.values()]
    assert len(set(variables)) == len(variables)
    for name, port in PUBLISHED.items():
        assert port.variable == f"CAREBRIDGE_COMPOSE_{name.upper()}_PORT"
    kafka = SERVICES_IN_COMPOSE["kafka"]["environment"]
    assert PUBLISHED["kafka"].default == 29092 and PUBLISHED["postgres"].default == 25432
    # host clients get the published port back from the broker's EXTERNAL listener
    assert (
        f"EXTERNAL://127.0.0.1:${{{PUBLISHED['kafka'].variable}:-29092}}"
        in kafka["KAFKA_ADVERTISED_LISTENERS"]
    )
    assert f"EXTERNAL://:{PUBLISHED['kafka'].container_port}" in kafka["KAFKA_LISTENERS"]


@pytest.mark.parametrize("service", [*SERVICES, "smtp"])
def test_long_running_services_restart_after_a_crash(service: str) -> None:
    assert SERVICES_IN_COMPOSE[service]["restart"] == "unless-stopped"


@pytest.mark.parametrize("service", SERVICES)
def test_service_matches_its_settings(service: str) -> None:
    spec = SERVICES_IN_COMPOSE[service]
    env: dict[str, str] = {k: str(v) for k, v in spec["environment"].items()}
    known = env_settings(service_settings_class(service))
    unknown = sorted(set(env) - set(known))
    assert not unknown, f"{service}: variables no setting reads: {unknown}"

    port = int(env["CAREBRIDGE_HTTP_PORT"])
    assert port == service_settings_class(service).model_fields["http_port"].default
    assert (PUBLISHED[service].default, PUBLISHED[service].container_port) == (port, port)
    assert env["CAREBRIDGE_HTTP_HOST"] == "0.0.0.0"
    health = " ".join(spec["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{port}/readyz", health), health
    assert spec["command"] == ["python", "-m", f"carebridge_{service}"]
    assert spec["build"]["args"]["SERVICE"] == service

    database = urlparse(env["DATABASE_URL"])
    assert database.hostname == "postgres" and database.port == 5432
    assert database.path == "/" + SERVICES_IN_COMPOSE["postgres"]["environment"]["POSTGRES_DB"]
    # its own least-privilege role, with the password its deploy step gave it (ADR 0014)
    migrate = SERVICES_IN_COMPOSE[f"{service}-migrate"]
    assert database.username == service_role(service)
    assert database.password == migrate["environment"][password_env(service)]
    assert spec["depends_on"][f"{service}-migrate"]["condition"] == "service_completed_successfully"
    assert ADMIN_URL_ENV not in env
    # its own Kafka principal, with the password kafka-provision gave it (ADR 0013)
    provision = SERVICES_IN_COMPOSE["kafka-provision"]["environment"]
    assert env["CAREBRIDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["CAREBRIDGE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["CAREBRIDGE_KAFKA_SASL_USERNAME"] == principal_name(service)
    assert env["CAREBRIDGE_KAFKA_SASL_PASSWORD"] == provision[password_variable(service)]
    assert spec["depends_on"]["kafka-provision"]["condition"] == "service_completed_successfully"
    assert env["CAREBRIDGE_DEV_AUTH"] == "true"
    advertised = SERVICES_IN_COMPOSE["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"//{env['KAFKA_BOOTSTRAP_SERVERS']}" in advertised

    for dependency in ("kafka", "postgres"):
        assert spec["depends_on"][dependency]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_each_migrate_step_is_the_services_deploy_command_as_the_postgres_admin(
    service: str,
) -> None:
    migrate = SERVICES_IN_COMPOSE[f"{service}-migrate"]
    assert migrate["command"] == ["python", "-m", f"carebridge_{service}", "migrate"]
    assert migrate["image"] == SERVICES_IN_COMPOSE[service]["image"]
    admin = urlparse(migrate["environment"][ADMIN_URL_ENV])
    postgres = SERVICES_IN_COMPOSE["postgres"]["environment"]
    assert (admin.hostname, admin.port, admin.path) == ("postgres", 5432, "/carebridge")
    assert (admin.username, admin.password) == ("postgres", postgres["POSTGRES_PASSWORD"])
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "restart" not in migrate  # a one-shot: compose waits for its exit


def test_kafka_authorizes_every_client_and_provisioning_covers_every_principal() -> None:
    kafka = SERVICES_IN_COMPOSE["kafka"]["environment"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, "no listener without a login"
    assert set(protocols) == {
        listener.split(":")[0] for listener in kafka["KAFKA_LISTENERS"].split(",")
    }
    provision = SERVICES_IN_COMPOSE["kafka-provision"]
    assert provision["command"] == ["carebridge", "kafka", "provision"]
    admin = provision["environment"]
    assert f"User:{admin['CAREBRIDGE_KAFKA_SASL_USERNAME']}" in kafka["KAFKA_SUPER_USERS"].split(
        ";"
    )
    assert (
        f'user_{ADMIN_PRINCIPAL}="{admin["CAREBRIDGE_KAFKA_SASL_PASSWORD"]}"'
        in (kafka["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"])
    )
    for role in managed_roles():
        assert admin.get(password_variable(role)), f"kafka-provision sets no password for {role}"
    assert provision["depends_on"]["kafka"]["condition"] == "service_healthy"
    for service in SERVICES:  # no service holds the admin's password
        values = SERVICES_IN_COMPOSE[service]["environment"].values()
        assert admin["CAREBRIDGE_KAFKA_SASL_PASSWORD"] not in values, service


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
    assert f"ARG PYTHON_IMAGE={IMAGES['python'].public}" in dockerfile


def test_dockerfile_reads_the_build_ca_in_the_build_stage_only() -> None:
    """The CA bundle for TLS-intercepting proxies is for the build, never in a shipped image:
    the final stage takes /app from the build stage and nothing else."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    build, final = dockerfile.split("\nFROM ${PYTHON_IMAGE}\n")
    assert "FROM ${PYTHON_IMAGE} AS build" in build
    assert "build-ca" in build and "build-ca" not in final and "SSL_CERT_FILE" not in final
    copies = [line for line in final.splitlines() if line.startswith("COPY")]
    assert copies == ["COPY --from=build /app /app"]
    assert (ROOT / "containers" / "build-ca" / ".gitignore").read_text().split() == ["*.pem"]


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
        assert PUBLISHED[service].container_port == port
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
    assert urlparse(datasource["url"]).port == PUBLISHED["prometheus"].container_port
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
