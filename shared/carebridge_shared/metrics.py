"""Prometheus counters shared by the runtime pieces (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_APPLIED = Counter(
    "carebridge_events_applied_total", "Events whose effect committed", ["consumer", "type"]
)
EVENTS_DUPLICATE = Counter(
    "carebridge_events_duplicate_total", "Redelivered events dropped by the inbox", ["consumer"]
)
EVENTS_DEAD_LETTERED = Counter(
    "carebridge_events_dead_lettered_total", "Events sent to a dead-letter topic", ["consumer"]
)
HANDLER_FAILURES = Counter(
    "carebridge_handler_failures_total", "Failed handler attempts", ["consumer", "transient"]
)
OUTBOX_PUBLISHED = Counter(
    "carebridge_outbox_published_total", "Outbox rows acknowledged by Kafka", ["producer"]
)
