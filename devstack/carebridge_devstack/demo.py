"""A demo patient walked through the running system over HTTP, then the event timeline.

The journey tests use the same client, so the demo cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

from carebridge_contracts import Envelope, all_topics
from carebridge_devstack.testing import Record, read_topic

from .dev_auth import COORDINATOR, Actor, DevAuth
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


_SLOT_FIELDS = ("clinician_id", "visit_type", "starts_at", "state")


@dataclass
class CareClient:
    """Thin HTTP client over the four services' public APIs.

    Every call carries a dev bearer token for the principal it acts for: `acting_as`, or who
    `DevAuth` infers from the request (the patient it is about, the clinician who records a
    visit's outcome, ops for the dev clock ...).
    """

    urls: dict[str, str]
    timeout: float = 30.0
    auth: DevAuth = field(default_factory=DevAuth)

    def call(
        self, service: str, method: str, path: str, *, acting_as: Actor | None = None, **kwargs: Any
    ) -> httpx.Response:
        if acting_as is not None:
            kwargs["headers"] = {**self.auth.headers_for(*acting_as), **kwargs.get("headers", {})}
        return httpx.request(
            method, self.urls[service] + path, timeout=self.timeout, auth=self.auth, **kwargs
        )

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

    def therapists(self, state: str) -> list[str]:
        """Ids of the therapists referral's roster has licensed in `state`."""
        found = self.ok(
            "referral", "GET", "/v1/therapists", params={"state": state}, acting_as=COORDINATOR
        )
        return [therapist["id"] for therapist in found["therapists"]]

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

    def complete(self, appointment_id: str) -> dict[str, Any]:
        done: dict[str, Any] = self.ok(
            "booking", "POST", f"/v1/appointments/{appointment_id}/complete"
        )
        return done

    def refer(
        self, patient_id: str, psychiatrist_id: str, state: str = "NY", timeout: float = 60.0
    ) -> dict[str, Any]:
        """The psychiatrist refers the patient. Only one of the patient's psychiatrists may, and
        referral learns of their psychiatric visit from booking's events: until it has, the
        answer is 403 `not_treating`, and the request is tried again."""
        body = {
            "patient_id": patient_id,
            "state": state,
            "modality": "CBT",
            "urgency": "routine",
            "requesting_clinician_id": psychiatrist_id,
        }

        def attempt() -> dict[str, Any] | None:
            response = self.call("referral", "POST", "/v1/referrals", json=body)
            if response.status_code == 403 and response.json().get("code") == "not_treating":
                return None
            if response.status_code >= 400:
                raise RuntimeError(
                    f"POST referral/v1/referrals -> {response.status_code}: {response.text[:500]}"
                )
            referral: dict[str, Any] = response.json()
            return referral

        return wait_until(
            f"referral to learn {psychiatrist_id} treats the patient", attempt, timeout
        )

    def set_on_call_route(self, primary_email: str, escalation_email: str) -> None:
        """Where urgent safety alerts go (ops only)."""
        self.ok(
            "notification",
            "PUT",
            "/v1/on-call-route",
            json={"primary": {"email": primary_email}, "escalation": {"email": escalation_email}},
        )

    def grant_consent(self, patient_id: str) -> None:
        self.ok(
            "referral",
            "POST",
            f"/v1/patients/{patient_id}/consents",
            json={"scope": "care_plan_sharing"},
        )

    def wait_care_team(self, patient_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            response = self.call("referral", "GET", f"/v1/patients/{patient_id}/care-team")
            return response.json() if response.status_code == 200 else None

        return wait_until(f"{patient_id}'s care team", probe, timeout)

    def therapy_slot(self, patient_id: str, state: str, after: datetime) -> dict[str, Any]:
        """A therapy-intake slot with the patient's matched therapist (once booking knows it)."""
        start = after + timedelta(hours=2)
        params = {
            "state": state,
            "visit_type": "therapy_intake",
            "patient_id": patient_id,
            "from": start.isoformat(),
            "to": (start + timedelta(days=7)).isoformat(),
        }

        def probe() -> dict[str, Any] | None:
            slots = self.ok("booking", "GET", "/v1/slots", params=params)["slots"]
            return slots[0] if slots else None

        return wait_until("a therapy-intake slot with the matched therapist", probe, 60)

    def update_plan(
        self, patient_id: str, clinician_id: str, version: int, **sections: Any
    ) -> httpx.Response:
        return self.call(
            "referral",
            "PUT",
            f"/v1/care-plans/{patient_id}",
            json=sections,
            headers={"If-Match": f'"{version}"'},
            acting_as=("clinician", clinician_id),
        )

    def book_follow_up(
        self, patient_id: str, psychiatrist_id: str, state: str, *, after: datetime, days: int = 7
    ) -> dict[str, Any]:
        """Book the psychiatrist's first free follow-up at least two hours after `after` at
        which the patient has no other visit."""
        start = after + timedelta(hours=2)
        params = {
            "state": state,
            "visit_type": "psychiatric_follow_up",
            "clinician_id": psychiatrist_id,
            "from": start.isoformat(),
            "to": (start + timedelta(days=days)).isoformat(),
        }
        for slot in self.ok("booking", "GET", "/v1/slots", params=params)["slots"]:
            body = {"patient_id": patient_id, **{k: slot[k] for k in _SLOT_FIELDS}}
            response = self.call("booking", "POST", "/v1/appointments", json=body)
            if response.status_code == 409 and response.json()["code"] == "patient_double_booked":
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"POST booking/v1/appointments -> {response.text[:500]}")
            booked: dict[str, Any] = response.json()
            return booked
        raise RuntimeError(
            f"{psychiatrist_id} has no follow-up free for the patient in {days} days"
        )

    def repeat_measure(
        self,
        patient_id: str,
        phq9: list[int],
        gad7: list[int],
        *,
        appointment_id: str | None = None,
        state: str = "NY",
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """The patient's repeat PHQ-9 / GAD-7 (intake's POST /v1/outcome-measures). Intake
        learns the patient is in care from booking's events: until then the answer is 409
        `not_in_care` (or 422 for a visit it has not heard of yet), and it is tried again."""
        body: dict[str, Any] = {"patient_id": patient_id, "state": state, "phq9": phq9}
        body |= {"gad7": gad7, "appointment_id": appointment_id}

        def attempt() -> dict[str, Any] | None:
            response = self.call("intake", "POST", "/v1/outcome-measures", json=body)
            if response.json().get("code") in ("not_in_care", "appointment_unknown"):
                return None
            if response.status_code >= 400:
                raise RuntimeError(f"POST intake/v1/outcome-measures -> {response.text[:500]}")
            measured: dict[str, Any] = response.json()
            return measured

        return wait_until("intake to learn the patient is in care", attempt, timeout)

    def care_plan(self, patient_id: str, acting_as: Actor | None = None) -> dict[str, Any]:
        plan: dict[str, Any] = self.ok(
            "referral", "GET", f"/v1/care-plans/{patient_id}", acting_as=acting_as
        )
        return plan

    def notification_now(self) -> datetime:
        return datetime.fromisoformat(self.ok("notification", "GET", "/v1/_dev/clock")["now"])

    def advance_notification_clock(self, seconds: float) -> None:
        self.ok("notification", "POST", "/v1/_dev/clock", json={"advance_seconds": seconds})


def visit_mails(mailbox: Mailbox, address: str) -> Callable[[], list[ReceivedMail]]:
    """A probe of the messages to `address` about visits (not the education messages)."""
    return lambda: [m for m in mailbox.to(address) if not m.is_education]


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


@dataclass(frozen=True)
class DemoCast:
    """Who the demo walked through: their ids are the `sub` of the demo tokens `make run` prints."""

    patient_id: str
    psychiatrist_id: str
    therapist_id: str


def step(console: Console, number: int, text: str) -> None:
    """One demo step, set apart from everything else on the terminal."""
    console.print(f"[bold green]step {number:>2}[/] {text}", highlight=False)


def walk_demo_patient(
    client: CareClient, mailbox: Mailbox, bootstrap: str, console: Console
) -> DemoCast:
    """Assessment -> slot search -> booking -> confirmation emails; prints each step."""
    patient_id = f"demo-{uuid.uuid4().hex[:8]}"
    patient_email = f"{patient_id}@patients.example"
    console.rule(f"demo patient {patient_id}")
    client.set_contact("patient", patient_id, patient_email)
    step(console, 1, "contact details stored in the notification service (never in events)")

    result = client.assess(patient_id)
    step(
        console,
        2,
        f"intake assessment: PHQ-9 {result['phq9_total']} ({result['phq9_band']}), "
        f"GAD-7 {result['gad7_total']} ({result['gad7_band']})",
    )
    client.wait_eligible(patient_id)
    step(console, 3, "booking consumed AssessmentCompleted: the patient may book a first visit")

    slot = client.first_slot("NY", "initial_psychiatric_evaluation")
    clinician_email = f"{slot['clinician_id']}@clinicians.example"
    client.set_contact("clinician", slot["clinician_id"], clinician_email)
    step(console, 4, f"first free slot in NY: {slot['starts_at']} with {slot['clinician_id']}")

    appointment = client.book(patient_id, slot)
    step(console, 5, f"booked appointment {appointment['id']} ({appointment['status']})")

    for who, address in (("patient", patient_email), ("clinician", clinician_email)):
        mail = wait_until(f"confirmation email to the {who}", visit_mails(mailbox, address), 60)
        step(console, 6, f"confirmation email to the {who}: {mail[0].subject!r}")

    therapist = walk_collaboration(client, mailbox, console, patient_id, patient_email, appointment)
    walk_outcomes(client, mailbox, console, patient_id, appointment["clinician_id"], therapist)

    def with_notifications() -> list[TimelineEntry] | None:
        found = asyncio.run(timeline(bootstrap, patient_id))
        types = [e.type for e in found]
        done = types.count("CarePlanUpdated") >= 2 and "EarlierFollowUpOffered" in types
        return found if done else None

    entries = wait_until("the care-plan events", with_notifications, 60)
    print_timeline(console, entries)
    return DemoCast(patient_id, appointment["clinician_id"], therapist)


def walk_collaboration(
    client: CareClient,
    mailbox: Mailbox,
    console: Console,
    patient_id: str,
    patient_email: str,
    appointment: dict[str, Any],
) -> str:
    """First visit done -> referral -> consent -> therapist matched -> therapy intake booked ->
    both clinicians update the shared plan and each hears of the other's change. Returns the
    therapist's id."""
    psychiatrist = appointment["clinician_id"]
    # Contacts for every therapist who may be matched, before the match: the care-team notice
    # to the therapist goes out as soon as the team forms (without one it is NotificationFailed).
    for candidate in client.therapists("NY"):
        client.set_contact("clinician", candidate, f"{candidate}@clinicians.example")
    client.complete(appointment["id"])
    step(console, 7, "first psychiatric visit completed")
    referral = client.refer(patient_id, psychiatrist)
    step(console, 8, f"{psychiatrist} referred the patient to therapy ({referral['status']})")
    client.grant_consent(patient_id)
    team = client.wait_care_team(patient_id)
    therapist = team["therapist_id"]
    step(console, 9, f"consent granted; care team formed: {psychiatrist} + {therapist}")
    wait_until(
        "the therapist-match email",
        lambda: [m for m in mailbox.to(patient_email) if "therapist" in m.subject.lower()],
        60,
    )
    step(console, 10, "the patient was told a therapist has been matched")
    slot = client.therapy_slot(patient_id, "NY", client.notification_now())
    intake = client.book(patient_id, slot)
    step(
        console, 11, f"therapy intake booked with {intake['clinician_id']} at {intake['starts_at']}"
    )
    first = client.update_plan(
        patient_id, psychiatrist, 0, goals=["Reduce PHQ-9 below 10"],
        diagnosis_codes=["F32.1"], medication_summary="sertraline 50 mg daily",
    )  # fmt: skip
    second = client.update_plan(
        patient_id, therapist, 1, goals=["Reduce PHQ-9 below 10", "Weekly behavioural activation"],
        diagnosis_codes=["F32.1"], medication_summary="sertraline 50 mg daily",
        therapy_modality="CBT", therapy_frequency={"sessions_per_month": 4},
    )  # fmt: skip
    stale = client.update_plan(patient_id, psychiatrist, 1, goals=["stale"])
    step(
        console,
        12,
        f"shared plan: psychiatrist wrote v1 ({first.status_code}), therapist v2 "
        f"({second.status_code}), a stale write was refused ({stale.status_code})",
    )
    wait_for_mail(mailbox, f"{therapist}@clinicians.example", "plan change to the therapist")
    step(console, 13, "each clinician was told of the other's plan change")
    therapist_id: str = therapist
    return therapist_id


# (PHQ-9, GAD-7) answers of the demo's repeat measures: 4 and 2, then 13 and 8.
DEMO_IMPROVED = ([1, 1, 0, 1, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0, 0])
DEMO_WORSE = ([2, 2, 2, 2, 1, 2, 1, 1, 0], [2, 1, 1, 1, 1, 1, 1])


def walk_outcomes(
    client: CareClient,
    mailbox: Mailbox,
    console: Console,
    patient_id: str,
    psychiatrist: str,
    therapist: str,
) -> None:
    """Two follow-ups with repeat measures (improving, then worsening): the trend in the
    shared plan, the care team told of the worsening, an earlier follow-up offered."""
    now = client.notification_now()
    first = client.book_follow_up(patient_id, psychiatrist, "NY", after=now)
    better = client.repeat_measure(patient_id, *DEMO_IMPROVED, appointment_id=first["id"])
    client.complete(first["id"])
    step(
        console,
        14,
        f"follow-up 1 ({first['starts_at']}): repeat PHQ-9 {better['phq9_total']} "
        f"({better['phq9_change']:+d} from baseline, remission {better['phq9_remission']}), "
        f"GAD-7 {better['gad7_total']} ({better['gad7_change']:+d})",
    )
    later = client.notification_now() + timedelta(days=7)
    second = client.book_follow_up(patient_id, psychiatrist, "NY", after=later)
    worse = client.repeat_measure(patient_id, *DEMO_WORSE, appointment_id=second["id"])
    step(
        console,
        15,
        f"before follow-up 2 ({second['starts_at']}): PHQ-9 {worse['phq9_total']} "
        f"({worse['phq9_band']}), GAD-7 {worse['gad7_total']} ({worse['gad7_band']}): worse",
    )

    def mails(address: str, word: str) -> Callable[[], list[ReceivedMail]]:
        return lambda: [m for m in mailbox.to(address) if word in m.subject]

    for clinician in (psychiatrist, therapist):
        notice = mails(f"{clinician}@clinicians.example", "worse")
        wait_until(f"the worsening notice to {clinician}", notice, 60)
    offer = wait_until(
        "the earlier follow-up offer", mails(f"{psychiatrist}@clinicians.example", "earlier"), 60
    )
    step(console, 16, f"both clinicians were told once; {psychiatrist}: {offer[0].subject!r}")

    def full_trend() -> list[dict[str, Any]] | None:
        plan = client.care_plan(patient_id, acting_as=("clinician", therapist))
        points: list[dict[str, Any]] = plan["outcomes"]["trend"]
        return points if len(points) >= 3 else None

    table = Table(title="outcome trend in the shared plan (GET /v1/care-plans/{patient_id})")
    for column in ("measured", "kind", "PHQ-9", "change", "response", "remission", "GAD-7"):
        table.add_column(column)
    for point in wait_until("the trend in the plan", full_trend, 60):
        change = point["phq9_change"]
        table.add_row(
            point["measured_at"][:16],
            point["kind"],
            f"{point['phq9_total']} {point['phq9_band']}",
            "" if change is None else f"{change:+d}",
            _verdict(point["phq9_response"]),
            _verdict(point["phq9_remission"]),
            f"{point['gad7_total']} {point['gad7_band']}",
        )
    console.print(table)
    educated = [m.subject for m in mailbox.to(f"{patient_id}@patients.example") if m.is_education]
    step(console, 17, f"education messages the patient received: {educated}")


def _verdict(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")
