"""When each journey's events appeared on their topics and its e-mail reached the SMTP sink,
and the per-stage latencies that follow from those instants."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path

import asyncpg
from aiokafka import TopicPartition

from carebridge_bench import kafka_tools
from carebridge_bench.journeys import Journey
from carebridge_bench.stats import Summary, summarise_ms
from carebridge_contracts.registry import Topic
from carebridge_devstack.smtp_sink import ENVELOPE_TO, RECEIVED_AT
from carebridge_notification.domain.planning import BOOKED_PATIENT

TEMPLATE_HEADER = "X-Carebridge-Template"
TYPE_HEADER = "ce-type"

# (name, start instant, end instant): the stages reported for every journey.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("assessment HTTP", "assess_sent", "assess_done"),
    ("assessment -> AssessmentCompleted on topic", "assess_sent", "assessment_event"),
    ("assessment -> booking accepted", "assess_sent", "book_sent"),
    ("booking HTTP", "book_sent", "book_done"),
    ("booking -> AppointmentBooked on topic", "book_sent", "booked_event"),
    ("booking -> confirmation queued (notification DB)", "book_sent", "queued"),
    ("booking -> confirmation email", "book_sent", "email"),
    ("booking -> NotificationSent on topic", "book_sent", "sent_event"),
    ("end to end: assessment -> confirmation email", "assess_sent", "email"),
)
TARGET_STAGE = "booking -> confirmation email"
WATCHED = {
    Topic.ASSESSMENTS: "AssessmentCompleted",
    Topic.APPOINTMENTS: "AppointmentBooked",
    Topic.DELIVERIES: "NotificationSent",
}
INSTANT_OF_TYPE = {
    "AssessmentCompleted": "assessment_event",
    "AppointmentBooked": "booked_event",
    "NotificationSent": "sent_event",
}


@dataclass
class Instants:
    """Epoch seconds of what happened to one patient (first occurrence of each)."""

    values: dict[str, float] = field(default_factory=dict)

    def first(self, name: str, at: float) -> None:
        if name not in self.values or at < self.values[name]:
            self.values[name] = at


class MailReader:
    """Reads the sink's ``.eml`` files incrementally, headers only: recipient, template, and
    when the sink received the message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: set[str] = set()
        self._parser = BytesHeaderParser()
        self.received: dict[str, list[tuple[str, float]]] = {}

    def poll(self) -> int:
        """Read new files; returns how many."""
        new = 0
        for path in sorted(self.directory.glob("*.eml")):
            if path.name in self._seen:
                continue
            self._seen.add(path.name)
            headers = self._parser.parsebytes(path.read_bytes())
            at = headers.get(RECEIVED_AT)
            if at is None:
                continue
            template = str(headers.get(TEMPLATE_HEADER, ""))
            for address in str(headers.get(ENVELOPE_TO, "")).split(","):
                self.received.setdefault(address.strip().lower(), []).append((template, float(at)))
            new += 1
        return new

    def confirmation_at(self, address: str) -> float | None:
        found = [at for t, at in self.received.get(address.lower(), []) if t == BOOKED_PATIENT]
        return min(found) if found else None


async def topic_instants(
    bootstrap: str,
    start: dict[str, dict[TopicPartition, int]],
    prefix: str,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - bounds the read of one topic
) -> dict[str, Instants]:
    """Broker append time of each patient's first watched event on each topic since `start`."""
    found: dict[str, Instants] = {}
    for topic, event_type in WATCHED.items():
        records = await kafka_tools.read_from(
            bootstrap,
            str(topic),
            start[str(topic)],
            keep=lambda key: key.startswith(prefix),
            timeout=timeout,
        )
        for record in records:
            data = json.loads(record.value)
            if data.get("type") != event_type:
                continue
            if event_type == "NotificationSent" and data["data"].get("template") != BOOKED_PATIENT:
                continue
            found.setdefault(record.key, Instants()).first(
                INSTANT_OF_TYPE[event_type], record.timestamp
            )
    return found


async def queued_instants(database_url: str, prefix: str) -> dict[str, float]:
    """When the notification service queued each patient's confirmation (its consumer's
    transaction), read from its table: it splits consumer lag from dispatcher lag."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT patient_id, min(created_at) AS queued FROM notification.deliveries"
            " WHERE starts_with(patient_id, $1) AND template = $2 GROUP BY patient_id",
            prefix,
            BOOKED_PATIENT,
        )
    finally:
        await conn.close()
    return {r["patient_id"]: r["queued"].timestamp() for r in rows}


def journey_instants(journey: Journey, topics: Instants | None, email: float | None) -> Instants:
    instants = Instants(dict(topics.values) if topics else {})
    for name in ("assess_sent", "assess_done", "book_sent", "book_done"):
        value = getattr(journey, name)
        if value is not None:
            instants.values[name] = value
    if email is not None:
        instants.values["email"] = email
    return instants


def stage_latencies(all_instants: Iterable[Instants]) -> dict[str, Summary | None]:
    """Per stage, the summary (ms) over the journeys that reached both its ends."""
    durations: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for instants in all_instants:
        for name, start, end in STAGES:
            if start in instants.values and end in instants.values:
                durations[name].append(instants.values[end] - instants.values[start])
    return {name: summarise_ms(values) for name, values in durations.items()}
