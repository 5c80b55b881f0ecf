"""The referral app in-process against the real stack, driven over ASGI.

Each app gets a fresh database and its own consumer group starting at "latest", and the
fixture waits for /readyz (the consumer joined its group), so events other test runs put on
the shared topics neither reach it from the past nor get taken from it by other instances.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from carebridge_contracts import AppointmentBooked, BaseEvent, Envelope, Topic, parse, topic_for
from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.testing import eventually, produce, read_topic, until_ready, wrap
from carebridge_referral.app import ReferralSettings, build
from carebridge_shared.context import ServiceContext

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Referral:
    """One in-process referral service and helpers to drive and observe it."""

    app: FastAPI
    client: httpx.AsyncClient
    kafka: str
    # (patient, psychiatrist) pairs with a psychiatric visit this helper published
    visits: set[tuple[str, str]] = field(default_factory=set)
    sequences: dict[str, int] = field(default_factory=dict)

    new_id = staticmethod(unique)
    eventually = staticmethod(eventually)

    @property
    def context(self) -> ServiceContext:
        context: ServiceContext = self.app.state.context
        return context

    @property
    def pool(self) -> asyncpg.Pool:
        return self.context.pool

    async def put_therapist(
        self,
        therapist_id: str | None = None,
        *,
        states: Iterable[str] = ("WY",),
        modalities: Iterable[str] = ("CBT",),
        capacity: int = 1,
        active: bool = True,
        expect: int | None = None,
    ) -> str:
        therapist_id = therapist_id or unique("thr-wy")
        response = await self.client.put(
            f"/v1/therapists/{therapist_id}",
            json={
                "licence_states": list(states),
                "modalities": list(modalities),
                "capacity": capacity,
                "active": active,
            },
        )
        assert response.status_code in ((expect,) if expect else (200, 201)), response.text
        return therapist_id

    async def psychiatric_visit(
        self,
        patient_id: str,
        psychiatrist: str,
        *,
        starts_at: datetime | None = None,
        appointment_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Booking's AppointmentBooked of a psychiatric visit, once referral has applied it:
        the psychiatrist is then one of the patient's psychiatrists (ADR 0015)."""
        appointment_id = appointment_id or uuid.uuid4()
        start = starts_at or datetime.now(UTC) + timedelta(days=1)
        await self.publish(
            AppointmentBooked(
                patient_id=patient_id,
                appointment_id=appointment_id,
                clinician_id=psychiatrist,
                clinician_role="psychiatrist",
                visit_type="psychiatric_follow_up",
                state="WY",
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
            )
        )
        await self.visit_applied(appointment_id, "booked")
        self.visits.add((patient_id, psychiatrist))
        return appointment_id

    async def visit_applied(self, appointment_id: uuid.UUID, status: str) -> None:
        async def applied() -> bool:
            found: str | None = await self.pool.fetchval(
                "SELECT status FROM psychiatric_visits WHERE appointment_id = $1", appointment_id
            )
            return found == status

        await eventually(applied, what=f"referral to apply visit {appointment_id} ({status})")

    async def refer(
        self,
        patient_id: str,
        *,
        state: str = "WY",
        modality: str = "CBT",
        urgency: str = "routine",
        psychiatrist: str = "psy-wy-1",
        visit: bool = True,
    ) -> httpx.Response:
        """The psychiatrist's referral; first (`visit`) a psychiatric visit of the patient
        with them, as only one of the patient's psychiatrists may refer them."""
        if visit and (patient_id, psychiatrist) not in self.visits:
            await self.psychiatric_visit(patient_id, psychiatrist)
        return await self.client.post(
            "/v1/referrals",
            json={
                "patient_id": patient_id,
                "state": state,
                "modality": modality,
                "urgency": urgency,
                "requesting_clinician_id": psychiatrist,
            },
        )

    async def referred(self, patient_id: str, **kw: Any) -> dict[str, Any]:
        response = await self.refer(patient_id, **kw)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def referral(self, referral_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/referrals/{referral_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def referrals_of(self, patient_id: str) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/referrals", params={"patient_id": patient_id})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["referrals"]
        return found

    async def grant(self, patient_id: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/patients/{patient_id}/consents", json={"scope": "care_plan_sharing"}
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def revoke_consent(self, patient_id: str) -> dict[str, Any]:
        response = await self.client.delete(f"/v1/patients/{patient_id}/consents/care_plan_sharing")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def consented_patient(self, prefix: str = "p") -> str:
        patient_id = unique(prefix)
        await self.grant(patient_id)
        return patient_id

    async def publish(self, event: BaseEvent, *, sequence: int | None = None) -> Envelope:
        """`event` as its producer would publish it (`sequence`: the next one per patient and
        topic of what this helper published, unless given)."""
        key = f"{event.patient_id}/{topic_for(event)}"
        if sequence is None:
            sequence = self.sequences.get(key, 0) + 1
        self.sequences[key] = max(sequence, self.sequences.get(key, 0))
        envelope = wrap(event, event.patient_id, sequence)
        await produce(self.kafka, envelope)
        return envelope

    async def republish(self, envelope: Envelope) -> None:
        """The same envelope again, as a redelivery would bring it."""
        await produce(self.kafka, envelope)

    async def events(
        self,
        topic: Topic,
        patient_id: str,
        *,
        expect: int | None = None,
        settle: float = 1.0,
        timeout: float = 30.0,
    ) -> list[tuple[Envelope, BaseEvent]]:
        """The patient's events on `topic`, in publication order (one key, one partition)."""
        records = await read_topic(
            self.kafka,
            str(topic),
            where=lambda r: r.key == patient_id.encode(),
            expect=expect,
            settle=settle,
            timeout=timeout,
        )
        return [parse(r.value) for r in records]

    async def event_types(self, topic: Topic, patient_id: str, expect: int) -> list[str]:
        return [e.type for e, _ in await self.events(topic, patient_id, expect=expect)]


def settings_for(database_url: str, kafka: str, **overrides: Any) -> ReferralSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": kafka,
        "therapist_seed_file": "",
        "db_pool_max_size": 20,
        "relay_poll_interval_ms": 100,
        "instance_id": unique("referral-test"),
        "consumer_group": unique("referral-test"),
        "consumer_offset_reset": "latest",
        **overrides,
    }
    return ReferralSettings(**values)


@pytest.fixture
def referral_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings of the `referral` fixture to change (indirect parametrize)."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return overrides


@pytest.fixture
async def referral(
    service_database_url: Callable[[str], str],
    stack_endpoints: Any,
    referral_overrides: dict[str, Any],
) -> AsyncIterator[Referral]:
    settings = settings_for(
        service_database_url("referral"), stack_endpoints.kafka_bootstrap, **referral_overrides
    )
    app = build(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://referral",
            timeout=60,
            auth=DevAuth(),  # each request signed as whom it acts for (ADR 0012)
        ) as client,
    ):
        await until_ready(client)
        yield Referral(app, client, stack_endpoints.kafka_bootstrap)


@pytest.fixture
async def replicas(
    service_database_url: Callable[[str], str], stack_endpoints: Any
) -> AsyncIterator[list[Referral]]:
    """Two referral replicas sharing one database (and one consumer group)."""
    group = unique("referral-test")
    database_url = service_database_url("referral")
    apps = [
        build(settings_for(database_url, stack_endpoints.kafka_bootstrap, consumer_group=group))
        for _ in range(2)
    ]
    async with contextlib.AsyncExitStack() as stack:
        started: list[Referral] = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://referral",
                    timeout=60,
                    auth=DevAuth(),
                )
            )
            started.append(Referral(app, client, stack_endpoints.kafka_bootstrap))
        for replica in started:
            await until_ready(replica.client)
        yield started
