"""Prometheus metrics shared by the runtime pieces (served at /metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter(
    "carebridge_events_applied_total", "Events whose effect committed", ["consumer", "type"]
)
EVENTS_DUPLICATE = Counter(
    "carebridge_events_duplicate_total", "Redelivered events dropped by the inbox", ["consumer"]
)
EVENTS_DEAD_LETTERED = Counter(
    "carebridge_events_dead_lettered_total", "Events sent to a dead-letter topic", ["consumer"]
)
EVENTS_PRODUCER_REFUSED = Counter(
    "carebridge_events_producer_refused_total",
    "Events dead-lettered because their envelope names a producer that does not own the topic",
    ["consumer", "topic"],
)
HANDLER_FAILURES = Counter(
    "carebridge_handler_failures_total", "Failed handler attempts", ["consumer", "transient"]
)
OUTBOX_PUBLISHED = Counter(
    "carebridge_outbox_published_total", "Outbox rows acknowledged by Kafka", ["producer"]
)

# --- added for ops dashboards (ADR 0010). Labels stay bounded: service, group, topic,
# partition, outcome, route; never patient, event or delivery ids.

MESSAGES_CONSUMED = Counter(
    "carebridge_messages_consumed_total",
    "Records a consumer group is done with, by outcome"
    " (applied, duplicate, ignored, dead_lettered)",
    ["consumer", "topic", "outcome"],
)
MESSAGES_PUBLISHED = Counter(
    "carebridge_messages_published_total",
    "Records Kafka acknowledged, by topic (outbox relay and dead letters)",
    ["producer", "topic"],
)
HANDLER_DURATION = Histogram(
    "carebridge_handler_duration_seconds",
    "From a record's arrival to its outcome, retries and backoff included",
    ["consumer", "topic", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
HANDLER_RETRIES = Counter(
    "carebridge_handler_retries_total",
    "Failed attempts at a record that will be tried again",
    ["consumer", "topic", "transient"],
)
OUTBOX_BACKLOG_ROWS = Gauge(
    "carebridge_outbox_backlog_rows", "Outbox rows not yet acknowledged by Kafka", ["producer"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "carebridge_outbox_oldest_age_seconds",
    "Age of the oldest outbox row not yet acknowledged by Kafka (0 when none)",
    ["producer"],
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "carebridge_outbox_publish_failures_total",
    "Relay rounds that failed (Kafka or PostgreSQL unreachable); the relay retries",
    ["producer"],
)
CONSUMER_LAG = Gauge(
    "carebridge_consumer_lag",
    "Records behind the partition's end (end offset - committed offset), per assigned partition",
    ["consumer", "topic", "partition"],
)
READY = Gauge("carebridge_ready", "1 when the readiness check passes, else 0", ["service", "check"])
ERRORS = Counter(
    "carebridge_errors_total", "Errors by component and error type", ["component", "error"]
)
HTTP_DURATION = Histogram(
    "carebridge_http_request_duration_seconds",
    "HTTP request latency by route template and status code",
    ["method", "route", "status"],
)


@dataclass(frozen=True)
class ErrorNote:
    component: str
    error: str
    at: datetime


_last_error: ErrorNote | None = None


def note_error(component: str, error: str) -> None:
    """Count an error and remember it as the process's last one (shown by /readyz).

    `error` is an exception class name or an error code: never a message, which may echo data.
    """
    global _last_error
    ERRORS.labels(component, error).inc()
    _last_error = ErrorNote(component, error, datetime.now(UTC))


def last_error() -> ErrorNote | None:
    return _last_error
