"""PHI stays where it belongs. Distinctive PHI-like canaries (a patient's e-mail and phone,
clinicians' e-mail, care-plan free text, and names, notes and comments the APIs must refuse)
are sent through every API that takes them while a whole journey runs (assessment, booking,
visit, referral, consent, care team, shared plan written by both clinicians, cancellation).
Then no log line of any service and no Kafka message on any topic (dead letters included;
value, key and headers) may contain one; each is stored only by the service that owns it; no
refusal echoes it; and no e-mail carries clinical free text."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from carebridge_contracts import Envelope, all_topics_with_dlq
from carebridge_contracts.services import SERVICES
from carebridge_devstack.demo import CareClient, wait_for_mail, wait_until
from carebridge_devstack.smtp_sink import ReceivedMail
from carebridge_devstack.system import LocalSystem
from carebridge_devstack.testing import eventually
from carebridge_shared.kafka import security_options

pytestmark = [pytest.mark.integration, pytest.mark.journey]

# Letters that never occur in hex, so a token cannot turn up inside a UUID or a trace id.
_TOKEN_LETTERS = "ghjkmnpqrstvwxyz"


def _token() -> str:
    return "".join(random.choices(_TOKEN_LETTERS, k=10))


@dataclass(frozen=True)
class Canaries:
    contact: str = field(default_factory=_token)  # inside every e-mail address
    plan: str = field(default_factory=_token)  # inside care-plan free text
    refused: str = field(default_factory=_token)  # inside values the APIs must refuse
    phone_digits: str = field(default_factory=lambda: "".join(random.choices("0123456789", k=7)))

    @property
    def patient_email(self) -> str:
        return f"zelda.{self.contact}@patients.example"

    @property
    def patient_phone(self) -> str:
        return f"+1 (555) {self.phone_digits[:3]}-{self.phone_digits[3:]}"

    def clinician_email(self, clinician_id: str) -> str:
        return f"{clinician_id}.{self.contact}@clinicians.example"

    @property
    def goals(self) -> list[str]:
        return [
            f"Sleep through the night; she says the nightmares started after the divorce {self.plan}",
            f"Return to work part-time at the bakery {self.plan}",
        ]

    @property
    def medication(self) -> str:
        return f"sertraline 50 mg daily, taken with her sister's help {self.plan}"

    @property
    def name(self) -> str:
        return f"Zelda Quorn-{self.refused}"

    def needles(self) -> dict[str, list[str]]:
        """What to look for, by kind: each canary as sent and as a service might reformat it."""
        digits = "555" + self.phone_digits
        return {
            "contact": [
                self.contact,
                self.patient_phone,
                digits,
                f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            ],
            "plan": [self.plan],
            "refused": [self.refused],
        }

    def found_in(self, text: str) -> list[str]:
        """The kinds of canary `text` contains (case-insensitive)."""
        lowered = text.lower()
        return [
            kind
            for kind, needles in self.needles().items()
            if any(needle.lower() in lowered for needle in needles)
        ]


@dataclass
class Run:
    """What one journey left behind, gathered once for the tests below."""

    canaries: Canaries
    patient: str
    refusals: list[tuple[str, httpx.Response]]
    logs: dict[str, list[str]]
    records: list[tuple[str, str, bytes]]  # (topic, what, bytes)
    patient_event_types: set[str]
    rows: dict[str, list[str]]  # "schema.table" -> rows as text
    mails: list[ReceivedMail]


def refuse_phi(
    client: CareClient, canaries: Canaries, patient: str
) -> list[tuple[str, httpx.Response]]:
    """Send PHI where no API accepts it: each request must be refused."""
    name, note = canaries.name, f"feels hopeless since losing her job {canaries.refused}"
    assessment = {
        "patient_id": patient, "state": "NY", "phq9": [1] * 9, "gad7": [1] * 7,
        "therapy_interest": True, "preferred_channel": "email",
    }  # fmt: skip
    sent: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("a name and notes with an assessment", "intake", "POST", "/v1/assessments",
         {"json": {**assessment, "patient_name": name, "notes": note}}),
        ("free text as a PHQ-9 answer", "intake", "POST", "/v1/assessments",
         {"json": {**assessment, "phq9": [note] + [1] * 8}}),
        ("a name as the patient id", "intake", "POST", "/v1/assessments",
         {"json": {**assessment, "patient_id": name}}),
        ("a name with a contact", "notification", "PUT", f"/v1/contacts/patient/{patient}",
         {"json": {"email": canaries.patient_email, "full_name": name}}),
        ("a name inside an e-mail address", "notification", "PUT",
         f"/v1/contacts/patient/{patient}", {"json": {"email": f"{name} <z@patients.example>"}}),
        ("a clinician's display name", "booking", "PUT", "/v1/clinicians/psy-phi-test",
         {"json": {"role": "psychiatrist", "time_zone": "UTC", "display_name": name}}),
        ("a therapist's name", "referral", "PUT", "/v1/therapists/thr-phi-test",
         {"json": {"capacity": 1, "name": name}}),
        ("a name in a query", "booking", "GET", "/v1/appointments", {"params": {"patient_id": name}}),
        ("a name in a path", "booking", "GET", f"/v1/patients/{name}/eligibility", {}),
        ("psychotherapy notes in the care plan", "referral", "PUT", f"/v1/care-plans/{patient}",
         {"json": {"goals": ["ok"], "psychotherapy_notes": note}}),
    ]  # fmt: skip
    return [
        (what, client.call(service, method, path, **kwargs))
        for what, service, method, path, kwargs in sent
    ]


def walk_journey(client: CareClient, system: LocalSystem, canaries: Canaries, patient: str) -> None:
    """Assessment -> first visit booked and completed -> referral -> consent -> care team ->
    therapy intake booked -> both clinicians write the plan -> the therapy intake cancelled."""
    mailbox = system.mailbox
    client.ok(
        "notification", "PUT", f"/v1/contacts/patient/{patient}",
        json={"email": canaries.patient_email, "phone": canaries.patient_phone,
              "preferred_channel": "email"},
    )  # fmt: skip
    client.assess(patient, state="NY", therapy_interest=True)
    client.wait_eligible(patient)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    psychiatrist = slot["clinician_id"]
    client.set_contact("clinician", psychiatrist, canaries.clinician_email(psychiatrist))
    visit = client.book(patient, slot)
    wait_for_mail(mailbox, canaries.patient_email, "the booking confirmation")
    client.complete(visit["id"])
    client.refer(patient, psychiatrist)
    client.grant_consent(patient)
    therapist = client.wait_care_team(patient)["therapist_id"]
    client.set_contact("clinician", therapist, canaries.clinician_email(therapist))
    therapy = client.book(patient, client.therapy_slot(patient, "NY", client.notification_now()))

    first = client.update_plan(
        patient, psychiatrist, 0, goals=canaries.goals[:1], diagnosis_codes=["F32.1"],
        medication_summary=canaries.medication,
    )  # fmt: skip
    assert first.status_code == 200, first.text
    wait_for_mail(mailbox, canaries.clinician_email(therapist), "the therapist's plan notice")
    second = client.update_plan(
        patient, therapist, 1, goals=canaries.goals, diagnosis_codes=["F32.1"],
        medication_summary=canaries.medication, therapy_modality="CBT",
        therapy_frequency={"sessions_per_month": 4},
    )  # fmt: skip
    assert second.status_code == 200, second.text

    def plan_notice_to_psychiatrist() -> bool:
        subjects = [m.subject for m in mailbox.to(canaries.clinician_email(psychiatrist))]
        return any("plan" in s.lower() for s in subjects)

    wait_until("the psychiatrist's plan notice", plan_notice_to_psychiatrist, 60)
    client.ok(
        "booking", "POST", f"/v1/appointments/{therapy['id']}/cancel",
        json={"cancelled_by": "patient", "reason_code": "patient_request"},
    )  # fmt: skip

    def cancellation_mail() -> bool:
        return any("cancel" in m.subject.lower() for m in mailbox.to(canaries.patient_email))

    wait_until("the cancellation e-mail", cancellation_mail, 60)


async def _topic_partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    async def known() -> list[TopicPartition] | None:
        await consumer._client.force_metadata_update()
        found = [(t, consumer.partitions_for_topic(t)) for t in topics]
        if any(not partitions for _, partitions in found):
            return None
        return [TopicPartition(t, p) for t, partitions in found for p in sorted(partitions or ())]

    partitions: list[TopicPartition] = await eventually(known, timeout=30, what="topic metadata")
    return partitions


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **security_options())
    await consumer.start()
    try:
        partitions = await _topic_partitions(consumer, all_topics_with_dlq())
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def records_since(
    bootstrap: str, start: dict[TopicPartition, int]
) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record on every topic published after `start` (key, value and headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **security_options(),
    )
    await consumer.start()
    try:
        partitions = list(start)
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        found = []

        async def behind() -> bool:
            return any([await consumer.position(p) < ends[p] for p in partitions])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [(r.topic, r.key, r.value, list(r.headers or ())) for r in batch]
        return found
    finally:
        await consumer.stop()


async def table_rows(database_url: str) -> dict[str, list[str]]:
    """Every row of every table of the four services' schemas, as text."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'",
            list(SERVICES),
        )
        rows: dict[str, list[str]] = {}
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            records = await conn.fetch(f"SELECT * FROM {name}")
            rows[f"{t['table_schema']}.{t['table_name']}"] = [
                " | ".join(_text(v) for v in record.values()) for record in records
            ]
        return rows
    finally:
        await conn.close()


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode(errors="replace")
    return str(value)


@pytest.fixture(scope="module")
def run(system: LocalSystem, system_database: str) -> Iterator[Run]:
    canaries = Canaries()
    patient = f"phi-{uuid.uuid4().hex[:10]}"
    client = CareClient({name: system.url(name) for name in SERVICES})
    start = asyncio.run(end_offsets(system.bootstrap))
    refusals = refuse_phi(client, canaries, patient)
    walk_journey(client, system, canaries, patient)

    def patient_events() -> set[str] | None:
        found = asyncio.run(records_since(system.bootstrap, start))
        types = {
            Envelope.from_bytes(value).type
            for topic, key, value, _ in found
            if key == patient.encode() and value and not topic.endswith(".dlq")
        }
        return types if "NotificationSent" in types and "CarePlanUpdated" in types else None

    wait_until("the journey's events on the topics", patient_events, 60)
    system.stop()  # every service flushed and wrote its last log line
    records: list[tuple[str, str, bytes]] = []
    for topic, key, value, headers in asyncio.run(records_since(system.bootstrap, start)):
        records += [(topic, "key", key or b""), (topic, "value", value or b"")]
        records += [(topic, f"header {k}", k.encode() + b"=" + (v or b"")) for k, v in headers]
    logs = {
        service: system.group.processes[service].log_path.read_text(errors="replace").splitlines()
        for service in SERVICES
    }
    yield Run(
        canaries=canaries,
        patient=patient,
        refusals=refusals,
        logs=logs,
        records=records,
        patient_event_types=patient_events() or set(),
        rows=asyncio.run(table_rows(system_database)),
        mails=system.mailbox.messages(),
    )


def test_every_service_logged_and_every_kind_of_event_flowed(run: Run) -> None:
    """The scans below saw real traffic (so a clean result means something)."""
    lines = {service: len(found) for service, found in run.logs.items()}
    topics = {topic for topic, _, _ in run.records}
    print(
        f"phi scan: {sum(lines.values())} log lines {lines}, {len(run.records)} Kafka keys, "
        f"values and headers on {len(topics)} topics, {sum(map(len, run.rows.values()))} rows "
        f"in {len(run.rows)} tables, {len(run.mails)} e-mails, {len(run.refusals)} refusals"
    )
    assert all(len(lines) > 20 for lines in run.logs.values()), {
        s: len(v) for s, v in run.logs.items()
    }
    assert {
        "AssessmentCompleted", "AppointmentBooked", "AppointmentCompleted", "AppointmentCancelled",
        "TherapistRequested", "TherapistMatched", "CareTeamFormed", "ConsentGranted",
        "CarePlanUpdated", "NotificationSent",
    } <= run.patient_event_types  # fmt: skip


def test_the_scans_find_what_is_there(run: Run) -> None:
    """Positive controls: the log scan finds a value the services do log (the patient id), and
    the matcher finds a canary however it is cased or a phone number however it is written."""
    assert any(run.patient in line for lines in run.logs.values() for line in lines)
    canaries = run.canaries
    assert canaries.found_in(canaries.patient_email.upper()) == ["contact"]
    assert canaries.found_in(f"tel:555{canaries.phone_digits}") == ["contact"]
    assert canaries.found_in(f"x {canaries.plan} {canaries.refused}") == ["plan", "refused"]


def test_no_log_line_contains_phi(run: Run) -> None:
    leaks = [
        f"{service}: {kinds} in {line[:300]}"
        for service, lines in run.logs.items()
        for line in lines
        if (kinds := run.canaries.found_in(line))
    ]
    assert not leaks, "PHI in the service logs:\n" + "\n".join(leaks[:20])


def test_no_kafka_message_contains_phi(run: Run) -> None:
    leaks = [
        f"{topic} {what}: {kinds}"
        for topic, what, raw in run.records
        if (kinds := run.canaries.found_in(raw.decode(errors="replace")))
    ]
    assert not leaks, "PHI on the bus:\n" + "\n".join(leaks[:20])


def test_every_phi_refusal_is_a_4xx_that_does_not_echo_it(run: Run) -> None:
    for what, response in run.refusals:
        print(f"refused {response.status_code}: {what}")
        assert 400 <= response.status_code < 500, f"{what}: {response.status_code} {response.text}"
        assert not run.canaries.found_in(response.text), f"{what} is echoed: {response.text}"
        body = response.json()
        assert body.get("message") or body.get("detail"), f"{what}: no reason in {body}"


OWNERS = {
    "contact": {"notification.contacts"},
    "plan": {"referral.care_plans", "referral.care_plan_versions"},
    "refused": set(),
}


def test_phi_is_stored_only_by_the_service_that_owns_it(run: Run) -> None:
    found: dict[str, set[str]] = {kind: set() for kind in OWNERS}
    for table, rows in run.rows.items():
        for row in rows:
            for kind in run.canaries.found_in(row):
                found[kind].add(table)
    assert found["contact"] == OWNERS["contact"], "contact details outside notification.contacts"
    assert found["plan"] == OWNERS["plan"], "care-plan text outside referral's care plans"
    assert found["refused"] == set(), "a refused value was stored"


def test_no_email_carries_clinical_free_text(run: Run) -> None:
    to_patient = [m for m in run.mails if run.canaries.patient_email in m.to]
    assert to_patient, "the patient was e-mailed (the one place their address is used)"
    for mail in run.mails:
        text = f"{mail.subject}\n{mail.body}"
        assert not {"plan", "refused"} & set(run.canaries.found_in(text)), mail.subject
