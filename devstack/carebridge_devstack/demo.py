"""A demo patient walked through the running system over HTTP, then the event timeline.

The journey tests use the same client, so the demo cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

from carebridge_contracts import Envelope, all_topics
from carebridge_shared.testing import Record, read_topic

from .smtp_sink import Mailbox, ReceivedMail

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@dataclass
class CareClient:
    """Thin HTTP client over the four services' public APIs."""

    urls: dict[str, str]
    timeout: float = 30.0

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.urls[service] + path, timeout=self.timeout, **kwargs)

    def ok(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(service, method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method} {service}{path} -> {response.status_code}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    def set_contact(self, kind: str, recipient_id: str, email: str) -> None:
        self.ok(
            "notification",
            "PUT",
            f"/v1/contacts/{kind}/{recipient_id}",
            json={"email": email, "preferred_channel": "email"},
        )

    def assess(self, patient_id: str, state: str = "NY", **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "patient_id": patient_id,
            "state": state,
            "phq9": [2, 2, 1, 2, 1, 1, 1, 1, 0],
            "gad7": [1, 2, 1, 1, 1, 0, 1],
            "therapy_interest": True,
            "preferred_channel": "email",
            **overrides,
        }
        result: dict[str, Any] = self.ok("intake", "POST", "/v1/assessments", json=body)
        return result

    def wait_eligible(self, patient_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found: dict[str, Any] = self.ok(
                "booking", "GET", f"/v1/patients/{patient_id}/eligibility"
            )
            return found if found["assessment_completed"] else None

        return wait_until(f"booking to consume {patient_id}'s assessment", probe, timeout)

    def first_slot(
        self, state: str, visit_type: str, *, after: datetime | None = None
    ) -> dict[str, Any]:
        """The earliest free slot at least two hours after `after` (default: now)."""
        start = (after or datetime.now(UTC)) + timedelta(hours=2)
        params = {
            "state": state,
            "visit_type": visit_type,
            "from": start.isoformat(),
            "to": (start + timedelta(days=7)).isoformat(),
        }
        slots = self.ok("booking", "GET", "/v1/slots", params=params)["slots"]
        if not slots:
            raise RuntimeError(f"no free {visit_type} slot in {state} in the next 7 days")
        slot: dict[str, Any] = slots[0]
        return slot

    def book(self, patient_id: str, slot: dict[str, Any]) -> dict[str, Any]:
        body = {
            "patient_id": patient_id,
            "clinician_id": slot["clinician_id"],
            "visit_type": slot["visit_type"],
            "starts_at": slot["starts_at"],
            "state": slot["state"],
        }
        booked: dict[str, Any] = self.ok("booking", "POST", "/v1/appointments", json=body)
        return booked

    def notification_now(self) -> datetime:
        return datetime.fromisoformat(self.ok("notification", "GET", "/v1/_dev/clock")["now"])

    def advance_notification_clock(self, seconds: float) -> None:
        self.ok("notification", "POST", "/v1/_dev/clock", json={"advance_seconds": seconds})


def wait_for_mail(
    mailbox: Mailbox, address: str, what: str, count: int = 1, timeout: float = 60.0
) -> list[ReceivedMail]:
    def probe() -> list[ReceivedMail] | None:
        found = mailbox.to(address)
        return found if len(found) >= count else None

    return wait_until(what, probe, timeout)


@dataclass(frozen=True)
class TimelineEntry:
    occurred_at: datetime
    type: str
    topic: str
    key: str
    partition: int
    offset: int
    sequence: int


async def timeline(
    bootstrap: str, patient_id: str, *, expect: int | None = None
) -> list[TimelineEntry]:
    """Every event about `patient_id` on every topic, in the order they happened."""
    key = patient_id.encode()
    entries: list[TimelineEntry] = []
    for topic in all_topics():
        records: list[Record] = await read_topic(
            bootstrap, str(topic), where=lambda r: r.key == key, timeout=15.0
        )
        for record in records:
            envelope = Envelope.from_bytes(record.value)
            entries.append(
                TimelineEntry(
                    envelope.occurred_at, envelope.type, record.topic, patient_id,
                    record.partition, record.offset, envelope.sequence,
                )
            )  # fmt: skip
    return sorted(entries, key=lambda e: (e.occurred_at, e.topic, e.offset))


def print_timeline(console: Console, entries: list[TimelineEntry]) -> None:
    table = Table(title="event timeline")
    for column in ("time (UTC)", "type", "topic", "key", "partition", "offset", "seq"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.occurred_at.strftime("%H:%M:%S.%f")[:-3], e.type, e.topic, e.key,
            str(e.partition), str(e.offset), str(e.sequence),
        )  # fmt: skip
    console.print(table)


def walk_demo_patient(
    client: CareClient, mailbox: Mailbox, bootstrap: str, console: Console
) -> str:
    """Assessment -> slot search -> booking -> confirmation emails; prints each step."""
    patient_id = f"demo-{uuid.uuid4().hex[:8]}"
    patient_email = f"{patient_id}@patients.example"
    console.rule(f"demo patient {patient_id}")
    client.set_contact("patient", patient_id, patient_email)
    console.print("1. contact details stored in the notification service (never in events)")

    result = client.assess(patient_id)
    console.print(
        f"2. intake assessment: PHQ-9 {result['phq9_total']} ({result['phq9_band']}), "
        f"GAD-7 {result['gad7_total']} ({result['gad7_band']})"
    )
    client.wait_eligible(patient_id)
    console.print("3. booking consumed AssessmentCompleted: the patient may book a first visit")

    slot = client.first_slot("NY", "initial_psychiatric_evaluation")
    clinician_email = f"{slot['clinician_id']}@clinicians.example"
    client.set_contact("clinician", slot["clinician_id"], clinician_email)
    console.print(f"4. first free slot in NY: {slot['starts_at']} with {slot['clinician_id']}")

    appointment = client.book(patient_id, slot)
    console.print(f"5. booked appointment {appointment['id']} ({appointment['status']})")

    for who, address in (("patient", patient_email), ("clinician", clinician_email)):
        mail = wait_for_mail(mailbox, address, f"confirmation email to the {who}")
        console.print(f"6. confirmation email to the {who}: {mail[0].subject!r}")

    def with_notifications() -> list[TimelineEntry] | None:
        found = asyncio.run(timeline(bootstrap, patient_id))
        return found if sum(e.type == "NotificationSent" for e in found) >= 2 else None

    entries = wait_until("NotificationSent events", with_notifications, 60)
    print_timeline(console, entries)
    return patient_id
