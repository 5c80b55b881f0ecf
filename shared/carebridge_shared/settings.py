"""Service settings, read from environment variables (one table in the README)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every carebridge service reads. Services subclass it for their own knobs."""

    model_config = SettingsConfigDict(env_prefix="CAREBRIDGE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:25432/carebridge",
        validation_alias=AliasChoices("DATABASE_URL", "CAREBRIDGE_DATABASE_URL"),
        description="PostgreSQL DSN; each service keeps its tables in its own schema.",
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
        default=500, description="Outbox relay poll interval when no NOTIFY arrives."
    )
    relay_batch_size: int = Field(default=200, description="Outbox rows published per batch.")
    db_pool_max_size: int = Field(default=10, description="Largest asyncpg pool size.")
    shutdown_grace_seconds: float = Field(
        default=15.0, description="How long SIGTERM waits for in-flight events."
    )
