"""The booking app in-process against the real stack, driven over ASGI."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from carebridge_booking.app import build
from carebridge_booking.settings import DEFAULT_SEED_FILE, BookingSettings
from carebridge_contracts import (
    AssessmentCompleted,
    BaseEvent,
    Envelope,
    SafetyRiskFlagged,
    kafka_headers,
    topic_for,
)
from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.testing import sample_assessment, until_ready, wrap
from carebridge_shared.clock import OffsetClock
from carebridge_shared.context import ServiceContext
from carebridge_shared.kafka import make_producer

ALL_DAY = {
    day: [{"start": "00:00", "end": "23:30"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def iso(value: datetime) -> str:
    return value.isoformat()


@dataclass
class Harness:
    client: httpx.AsyncClient
    clock: OffsetClock
    kafka: str
    context: ServiceContext

    new_id = staticmethod(unique)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.context.pool

    async def put_clinician(
        self,
        *,
        role: str = "psychiatrist",
        licences: Iterable[dict[str, Any]] = ({"state": "NY"},),
        working_hours: dict[str, list[dict[str, str]]] | None = None,
        time_zone: str = "UTC",
        prefix: str = "psy",
    ) -> str:
        clinician_id = unique(prefix)
        response = await self.client.put(
            f"/v1/clinicians/{clinician_id}",
            json={
                "role": role,
                "time_zone": time_zone,
                "licences": list(licences),
                "working_hours": ALL_DAY if working_hours is None else working_hours,
            },
        )
        assert response.status_code == 201, response.text
        return clinician_id

    async def produce(self, events: Iterable[BaseEvent]) -> None:
        producer = make_producer(self.kafka, client_id="booking-test-producer")
        await producer.start()
        try:
            for event in events:
                envelope: Envelope = wrap(event, event.patient_id)
                await producer.send_and_wait(
                    str(topic_for(event)),
                    value=envelope.to_bytes(),
                    key=envelope.subject.encode(),
                    headers=kafka_headers(envelope),
                )
        finally:
            await producer.stop()

    async def eligibility(self, patient_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/patients/{patient_id}/eligibility")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_consumed(self, patient_ids: Iterable[str], timeout: float = 90.0) -> None:
        """Poll until booking applied an AssessmentCompleted for each patient."""
        wanted = list(patient_ids)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            done = await self.pool.fetchval(
                "SELECT count(*) FROM patient_eligibility"
                " WHERE patient_id = ANY($1::text[]) AND assessment_completed_at IS NOT NULL",
                wanted,
            )
            if done == len(wanted):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"only {done}/{len(wanted)} assessments consumed")
            await asyncio.sleep(0.2)

    async def assessed_patient(self, *, imminent: bool = False, state: str = "NY") -> str:
        """A new patient whose AssessmentCompleted went through Kafka and was consumed."""
        patient_id = unique("p")
        event = sample_assessment(patient_id, state=state)
        if imminent:
            event = AssessmentCompleted.model_validate(
                {**event.model_dump(), "cssrs_imminent_risk": True}
            )
        await self.produce([event])
        await self.wait_consumed([patient_id])
        return patient_id

    def risk_flag(self, patient_id: str, *, imminent: bool = True) -> SafetyRiskFlagged:
        return SafetyRiskFlagged(
            patient_id=patient_id,
            assessment_id=uuid.uuid4(),
            state="NY",
            reasons=["cssrs_q4"] if imminent else ["phq9_item9"],
            imminent=imminent,
            flagged_at=datetime.now(UTC),
        )

    async def free_slot(
        self,
        clinician_id: str,
        *,
        visit_type: str = "initial_psychiatric_evaluation",
        state: str = "NY",
        after: timedelta = timedelta(hours=2),
        index: int = 0,
    ) -> datetime:
        start = self.clock.now() + after
        response = await self.client.get(
            "/v1/slots",
            params={
                "state": state,
                "visit_type": visit_type,
                "clinician_id": clinician_id,
                "from": iso(start),
                "to": iso(start + timedelta(days=3)),
            },
        )
        assert response.status_code == 200, response.text
        slots = response.json()["slots"]
        assert len(slots) > index, f"no free slot for {clinician_id}"
        return datetime.fromisoformat(slots[index]["starts_at"])

    async def book(
        self,
        patient_id: str,
        clinician_id: str,
        starts_at: datetime,
        *,
        visit_type: str = "initial_psychiatric_evaluation",
        state: str = "NY",
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/appointments",
            json={
                "patient_id": patient_id,
                "clinician_id": clinician_id,
                "visit_type": visit_type,
                "starts_at": iso(starts_at),
                "state": state,
            },
        )


def _settings(database_url: str, kafka: str, seed: str) -> BookingSettings:
    return BookingSettings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka,
        clinician_seed_file=seed,
        db_pool_max_size=20,
        relay_poll_interval_ms=100,
        instance_id=unique("booking-test"),
        # A group of its own that starts at the end: events of other test runs on the shared
        # topics neither replay into this database nor get taken from this instance.
        consumer_group=unique("booking-test"),
        consumer_offset_reset="latest",
    )


@pytest.fixture
def seed_file() -> str:
    """Override (e.g. with parametrize indirect) to start with the packaged directory."""
    return ""


@pytest.fixture
def packaged_seed() -> str:
    return str(DEFAULT_SEED_FILE)


@pytest.fixture
async def booking(
    service_database_url: Callable[[str], str], stack_endpoints: Any, seed_file: str
) -> AsyncIterator[Harness]:
    clock = OffsetClock()
    database_url = service_database_url("booking")  # booking's own role (ADR 0011)
    settings = _settings(database_url, stack_endpoints.kafka_bootstrap, seed_file)
    app = build(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://booking",
            timeout=60,
            auth=DevAuth(),  # each request signed as whom it acts for (ADR 0012)
        ) as client,
    ):
        await until_ready(client)
        yield Harness(client, clock, stack_endpoints.kafka_bootstrap, app.state.context)
