"""Service settings, read from environment variables (one table in the README)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from carebridge_shared.provisioning import service_role

DATABASE_URL_ALIASES = AliasChoices("DATABASE_URL", "CAREBRIDGE_DATABASE_URL")
DATABASE_URL_DESCRIPTION = (
    "PostgreSQL DSN of the service's own login role (made by its deploy step, python -m "
    "carebridge_<service> migrate), which may use but not change its schema; never a superuser: "
    "a service refuses a role that could rewrite its audit log. Default: per service, below."
)
SERVICE_DATABASE_URL_DESCRIPTION = (
    "The service's own login role on the local dev stack (which trusts it without a password)."
)
LOCAL_DATABASE = "127.0.0.1:25432/carebridge"


def database_url_field(service: str) -> Any:
    """The `database_url` field of a service's settings: its login role on the local stack."""
    return Field(
        default=f"postgresql://{service_role(service)}@{LOCAL_DATABASE}",
        validation_alias=DATABASE_URL_ALIASES,
        description=SERVICE_DATABASE_URL_DESCRIPTION,
    )


class ServiceSettings(BaseSettings):
    """What every carebridge service reads. Services subclass it for their own knobs."""

    model_config = SettingsConfigDict(env_prefix="CAREBRIDGE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="",
        validation_alias=DATABASE_URL_ALIASES,
        description=DATABASE_URL_DESCRIPTION,
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:29092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "CAREBRIDGE_KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="Comma-separated Kafka bootstrap servers.",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface the HTTP API binds to.")
    http_port: int = Field(default=8000, description="Port of the HTTP API.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    instance_id: str = Field(
        default="", description="Names this replica in logs and Kafka client ids (default: pid)."
    )
    kafka_topic_partitions: int = Field(
        default=3, description="Partitions for topics the service creates when missing."
    )
    kafka_replication_factor: int = Field(
        default=1, description="Replication factor for topics the service creates."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every Kafka client talks to the brokers: PLAINTEXT, SSL (TLS), "
        "SASL_PLAINTEXT or SASL_SSL (SCRAM login, over TLS for SASL_SSL). Use SASL_SSL or SSL "
        "outside a dev machine.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism for the SASL_* protocols. The services' logins are SCRAM; "
        "PLAIN is for a broker's static admin login (docker compose's provisioning), over TLS "
        "outside a dev machine.",
    )
    kafka_sasl_username: str = Field(default="", description="SASL/SCRAM user name.")
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), description="SASL/SCRAM password (never logged)."
    )
    kafka_ssl_cafile: str = Field(
        default="",
        description="PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); "
        "empty: the system's trusted CAs.",
    )
    kafka_ssl_certfile: str = Field(
        default="", description="PEM client certificate, for brokers that require mutual TLS."
    )
    kafka_ssl_keyfile: str = Field(default="", description="PEM private key of that certificate.")
    kafka_ssl_key_password: SecretStr = Field(
        default=SecretStr(""), description="Password of an encrypted private key file."
    )
    consumer_group: str = Field(
        default="",
        description="Kafka consumer group (default: the service name). A new group with a fresh "
        "database replays every topic from the start and rebuilds the service's state.",
    )
    consumer_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a consumer group with no committed offset starts. Keep earliest in "
        "production (nothing published before the first start is missed); latest suits "
        "throw-away groups in tests.",
    )
    consumer_max_attempts: int = Field(
        default=5, description="Attempts at a failing event before it goes to <topic>.dlq."
    )
    consumer_backoff_initial_ms: int = Field(
        default=200, description="First retry delay; doubles each attempt."
    )
    consumer_backoff_max_ms: int = Field(default=5000, description="Ceiling of the retry delay.")
    relay_poll_interval_ms: int = Field(
        default=200,
        description="Outbox relay poll interval: how late it finds rows another replica "
        "committed (its own process's commits wake it at once).",
    )
    relay_batch_size: int = Field(default=200, description="Outbox rows published per batch.")
    db_pool_max_size: int = Field(default=10, description="Largest asyncpg pool size.")
    shutdown_grace_seconds: float = Field(
        default=15.0, description="How long SIGTERM waits for in-flight events."
    )
    ready_outbox_max_age_seconds: float = Field(
        default=60.0,
        description="/readyz answers 503 while the oldest outbox row Kafka has not acknowledged "
        "is older than this.",
    )
    lag_sample_interval_seconds: float = Field(
        default=5.0, description="How often the consumer-lag gauge is refreshed from Kafka."
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_ENDPOINT", "CAREBRIDGE_OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OpenTelemetry collector base URL (OTLP/HTTP; spans go to <url>/v1/traces). "
        "Empty: spans are not exported; trace context still travels in Kafka headers.",
    )
    auth_public_keys: str = Field(
        default="",
        description="PEM public key(s) of the identity provider that signs bearer tokens (ES256 "
        "or RS256; several keys during a rotation). Required: without one the service will not "
        "start. Dev: .venv/bin/python -m carebridge_devstack token --public-key.",
    )
    auth_issuer: str = Field(
        default="carebridge-dev",
        description="Expected `iss` of tokens. The default is the dev issuer, which a service "
        "refuses unless CAREBRIDGE_DEV_AUTH is true: set your identity provider's issuer.",
    )
    auth_audience: str = Field(default="carebridge", description="Expected `aud` of tokens.")
    auth_algorithms: list[str] = Field(
        default=["ES256", "RS256"],
        description="Signature algorithms accepted (asymmetric only; HS* and none never are).",
    )
    auth_leeway_seconds: float = Field(
        default=30.0, description="Clock skew tolerated when checking exp, iat and nbf."
    )
    dev_auth: bool = Field(
        default=False,
        description="Dev machines and tests only: accept the dev token issuer (carebridge-dev) "
        "and this machine's dev signing key (.venv/bin/python -m carebridge_devstack token). Without it a "
        "service refuses to start with either. The dev stack and the pytest plugin set it.",
    )
