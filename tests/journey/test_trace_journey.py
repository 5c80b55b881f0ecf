"""One trace follows a patient from the HTTP request through every service to the e-mail.

The four services run as processes and export their spans over OTLP/HTTP to a receiver in this
test. The patient's client starts one trace (a W3C `traceparent` on the assessment and on the
booking request); every event about the patient, on every topic up to NotificationSent, must
carry that trace id in its Kafka headers, and the exported spans must show each service and the
SMTP hand-off of the confirmation e-mail inside it.

Other systems on the shared Kafka (other test sessions, a `make run`) may consume this patient's
events too and publish their own derived events for them; only the events this system's outboxes
wrote are its to check.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from carebridge_contracts import Envelope, Topic, all_topics
from carebridge_contracts.services import SERVICES
from carebridge_devstack.demo import CareClient, wait_for_mail, wait_until
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.system import LocalSystem, isolated_system
from carebridge_devstack.testing import Record, read_topic
from carebridge_shared.tracing import TRACEPARENT, trace_id_of

pytestmark = [pytest.mark.integration, pytest.mark.journey]


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


class OtlpReceiver:
    """The smallest OTLP/HTTP trace receiver: decodes what the services export."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver._collect(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _collect(self, request: ExportTraceServiceRequest) -> None:
        found: list[ExportedSpan] = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "?")
            for scope_spans in resource_spans.scope_spans:
                found += [
                    ExportedSpan(
                        service,
                        span.name,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                    )
                    for span in scope_spans.spans
                ]
        with self._lock:
            self.spans += found

    def in_trace(self, trace_id: str) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@dataclass(frozen=True)
class TracedSystem:
    system: LocalSystem
    database_url: str

    def published_event_ids(self, patient: str) -> set[bytes]:
        """Ids of the events about `patient` that this system's outboxes wrote."""

        async def query() -> set[bytes]:
            conn = await asyncpg.connect(self.database_url)
            try:
                found: set[bytes] = set()
                for schema in SERVICES:
                    rows = await conn.fetch(
                        f"SELECT event_id FROM {schema}.outbox WHERE message_key = $1", patient
                    )
                    found |= {str(row["event_id"]).encode() for row in rows}
                return found
            finally:
                await conn.close()

        return asyncio.run(query())


@pytest.fixture(scope="module")
def traced(
    stack_endpoints: StackEndpoints,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: OtlpReceiver,
) -> Iterator[TracedSystem]:
    work: Path = tmp_path_factory.mktemp("traced")
    otlp = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within moments, not the default 5 s
    }
    extra_env = {name: otlp for name in SERVICES}
    with isolated_system(stack_endpoints, work, label="trace", extra_env=extra_env) as (
        local,
        database_url,
    ):
        yield TracedSystem(local, database_url)


def _traceparent(trace_id: str) -> str:
    """What the patient's client sends: its own span in the trace, sampled."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _records_of(bootstrap: str, patient: str, event_ids: set[bytes]) -> dict[str, list[Record]]:
    """The records about `patient` on every topic whose event id is one of `event_ids`."""

    def wanted(record: Record) -> bool:
        return record.key == patient.encode() and record.headers.get("ce-id") in event_ids

    async def read() -> dict[str, list[Record]]:
        found: dict[str, list[Record]] = {}
        for topic in all_topics():
            records = await read_topic(bootstrap, str(topic), where=wanted, timeout=15)
            if records:
                found[str(topic)] = records
        return found

    return asyncio.run(read())


def test_one_trace_from_the_intake_request_to_the_confirmation_email(
    traced: TracedSystem, receiver: OtlpReceiver
) -> None:
    system = traced.system
    client = CareClient({name: system.url(name) for name in SERVICES})
    patient = f"t-{uuid.uuid4().hex[:10]}"
    patient_email = f"{patient}@patients.example"
    client.set_contact("patient", patient, patient_email)
    trace_id = secrets.token_hex(16)

    assessed = client.call(
        "intake",
        "POST",
        "/v1/assessments",
        json={
            "patient_id": patient,
            "state": "NY",
            "phq9": [2, 2, 1, 2, 1, 1, 1, 1, 0],
            "gad7": [1, 2, 1, 1, 1, 0, 1],
            "therapy_interest": True,  # referral opens a therapist referral from it
            "preferred_channel": "email",
        },
        headers={TRACEPARENT: _traceparent(trace_id)},
    )
    assert assessed.status_code < 300, assessed.text
    assert trace_id_of(assessed.headers["traceresponse"]) == trace_id

    client.wait_eligible(patient)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    client.set_contact(
        "clinician", slot["clinician_id"], f"{slot['clinician_id']}.{patient}@c.example"
    )
    booked = client.call(
        "booking",
        "POST",
        "/v1/appointments",
        json={
            "patient_id": patient,
            "clinician_id": slot["clinician_id"],
            "visit_type": slot["visit_type"],
            "starts_at": slot["starts_at"],
            "state": slot["state"],
        },
        headers={TRACEPARENT: _traceparent(trace_id)},
    )
    assert booked.status_code < 300, booked.text
    wait_for_mail(system.mailbox, patient_email, "the patient's confirmation e-mail")

    deliveries = str(Topic.DELIVERIES)

    def every_topic_through_notification_sent() -> dict[str, list[Record]] | None:
        ours = traced.published_event_ids(patient)
        found = _records_of(system.bootstrap, patient, ours)
        sent = [
            r for r in found.get(deliveries, []) if r.headers.get("ce-type") == b"NotificationSent"
        ]
        return found if len(sent) >= 2 else None  # the patient's and the clinician's

    by_topic = wait_until(
        "NotificationSent for both confirmations", every_topic_through_notification_sent, 60
    )
    expected_topics = {str(t) for t in (Topic.ASSESSMENTS, Topic.APPOINTMENTS, Topic.REFERRALS)}
    assert expected_topics | {deliveries} <= set(by_topic), sorted(by_topic)
    for topic, records in by_topic.items():
        for record in records:
            event = Envelope.from_bytes(record.value)
            carried = trace_id_of(record.headers.get(TRACEPARENT))
            assert carried == trace_id, (
                f"{event.type} on {topic} carries trace {carried}: {record.headers}"
            )

    def spans_of_every_service() -> list[ExportedSpan] | None:
        spans = receiver.in_trace(trace_id)
        services = {s.service for s in spans}
        names = {s.name for s in spans}
        wanted = {f"carebridge-{name}" for name in SERVICES}
        return spans if wanted <= services and "smtp send" in names else None

    spans = wait_until("spans of all four services in the trace", spans_of_every_service, 60)
    by_id = {s.span_id: s for s in spans}
    smtp = [s for s in spans if s.name == "smtp send"]
    assert {s.service for s in smtp} == {"carebridge-notification"}
    for send in smtp:  # each e-mail hangs off a delivery span inside the same trace
        assert by_id[send.parent_span_id].name == "notification deliver"
    server_spans = {(s.service, s.name) for s in spans if s.name.startswith("POST ")}
    assert ("carebridge-intake", "POST /v1/assessments") in server_spans
    assert ("carebridge-booking", "POST /v1/appointments") in server_spans
