"""An in-process notification service on real Kafka and PostgreSQL, mailing to the SMTP sink.

Each app gets a fresh database and its own consumer group starting at "latest", and the
fixture waits for /readyz (the consumer joined its group), so events other test runs put on the
shared topics neither reach it from the past nor get taken from it by other instances.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from carebridge_contracts import (
    AppointmentBooked,
    BaseEvent,
    ContractError,
    Envelope,
    NotificationFailed,
    NotificationSent,
    parse,
)
from carebridge_contracts.registry import topic_for
from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.smtp_sink import ReceivedMail, SmtpSink
from carebridge_devstack.testing import Record, eventually, produce, read_topic, until_ready, wrap
from carebridge_notification import dispatcher
from carebridge_notification.app import NotificationSettings, build
from carebridge_shared.clock import OffsetClock
from carebridge_shared.context import ServiceContext


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def booking(
    patient_id: str,
    clinician_id: str,
    starts_in: timedelta,
    *,
    appointment_id: uuid.UUID | None = None,
) -> AppointmentBooked:
    starts_at = (datetime.now(UTC) + starts_in).replace(microsecond=0)
    return AppointmentBooked(
        patient_id=patient_id,
        appointment_id=appointment_id or uuid.uuid4(),
        clinician_id=clinician_id,
        clinician_role="psychiatrist",
        visit_type="initial_psychiatric_evaluation",
        state="NY",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=1),
    )


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    sink: SmtpSink
    settings: NotificationSettings

    @property
    def ctx(self) -> ServiceContext:
        context: ServiceContext = self.app.state.context
        return context

    @property
    def clock(self) -> OffsetClock:
        assert isinstance(self.ctx.clock, OffsetClock)
        return self.ctx.clock

    async def publish(self, event: BaseEvent, *, sequence: int = 1) -> Envelope:
        envelope = wrap(event, event.patient_id, sequence)
        await produce(self.settings.kafka_bootstrap_servers, envelope)
        return envelope

    async def applied(self, event_id: uuid.UUID) -> bool:
        """This app's consumer applied the event (its inbox holds it)."""
        async with self.ctx.pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT true FROM inbox WHERE consumer = $1 AND event_id = $2",
                self.settings.consumer_group,
                event_id,
            )
        return bool(found)

    async def deliver(self, envelope: Envelope, *, timeout: float = 60.0) -> Envelope:
        """Produce `envelope` and wait until this app applied it (its inbox holds the event)."""
        await produce(self.settings.kafka_bootstrap_servers, envelope)
        await eventually(
            lambda: self.applied(envelope.event_id),
            timeout=timeout,
            what=f"{envelope.type} applied",
        )
        return envelope

    async def send(self, event: BaseEvent, *, sequence: int = 1) -> Envelope:
        """Wrap, produce and wait until applied (see `deliver`)."""
        return await self.deliver(wrap(event, event.patient_id, sequence))

    async def put_contact(self, kind: str, recipient_id: str, **body: Any) -> dict[str, Any]:
        response = await self.client.put(f"/v1/contacts/{kind}/{recipient_id}", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def advance(self, delta: timedelta) -> None:
        response = await self.client.post(
            "/v1/_dev/clock", json={"advance_seconds": delta.total_seconds()}
        )
        assert response.status_code == 200, response.text

    async def deliveries(self, **query: str) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/deliveries", params=query)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()
        return result

    async def wait_deliveries(
        self, count: int, *, status: str | None = None, timeout: float = 60.0, **query: str
    ) -> list[dict[str, Any]]:
        async def probe() -> list[dict[str, Any]] | None:
            rows = await self.deliveries(**query)
            matching = [r for r in rows if status is None or r["status"] == status]
            return rows if len(matching) >= count else None

        found: list[dict[str, Any]] = await eventually(
            probe, timeout=timeout, what=f"{count} deliveries ({status or 'any'}) for {query}"
        )
        return found

    def mail_to(self, address: str, about: object | None = None) -> list[ReceivedMail]:
        """Messages the sink received for `address` (about one appointment), in arrival order."""
        return [
            m
            for m in self.sink.messages
            if address in m.to and (about is None or str(about) in m.body)
        ]

    async def wait_mail(
        self, address: str, count: int, *, about: object | None = None, timeout: float = 60.0
    ) -> list[ReceivedMail]:
        await eventually(
            lambda: len(self.mail_to(address, about)) >= count,
            timeout=timeout,
            what=f"{count} message(s) to a test address",
        )
        return self.mail_to(address, about)

    async def drain(self) -> int:
        """Dispatch rounds until nothing is due (stray deliveries from history may be due too)."""
        total = 0
        while handled := await dispatcher.dispatch_once(self.ctx):
            total += handled
        return total

    async def dispatch_once(self) -> int:
        return await dispatcher.dispatch_once(self.ctx)

    async def notification_events(
        self, patient_id: str, *, expect: int, settle: float = 2.0, timeout: float = 60.0
    ) -> list[NotificationSent | NotificationFailed]:
        """NotificationSent/Failed events about one patient on the deliveries topic, published by
        this app (another run's notification app that consumed our events publishes its own,
        e.g. `no_contact` failures: they are not ours)."""
        async with self.ctx.pool.acquire() as conn:
            ours = {str(r["id"]) for r in await conn.fetch("SELECT id FROM deliveries")}

        def mine(record: Record) -> bool:
            if record.key != patient_id.encode():
                return False
            try:
                envelope = Envelope.from_bytes(record.value)
            except ContractError:
                return False
            return str(envelope.data.get("notification_id")) in ours

        records = await read_topic(
            self.settings.kafka_bootstrap_servers,
            str(topic_for(NotificationSent)),
            where=mine,
            expect=expect,
            settle=settle,
            timeout=timeout,
        )
        events: list[NotificationSent | NotificationFailed] = []
        for record in records:
            _, event = parse(record.value)
            assert isinstance(event, NotificationSent | NotificationFailed)
            events.append(event)
        return events

    # Helpers test modules cannot import from here (pytest's importlib mode), so they hang on
    # the fixture's object.
    uid = staticmethod(uid)
    booking = staticmethod(booking)
    eventually = staticmethod(eventually)


StartService = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def start_service(
    stack_endpoints: StackEndpoints,
    service_database_url: Callable[[str], str],
    smtp_sink: SmtpSink,
) -> StartService:
    """`async with start_service(**settings) as service:` runs the app with its lifespan."""

    database_url = service_database_url("notification")  # its own role (ADR 0011)

    @contextlib.asynccontextmanager
    async def start(*, wait_ready: bool = True, **overrides: Any) -> AsyncIterator[Service]:
        on_call = uid("on-call")
        values: dict[str, Any] = {
            "database_url": database_url,
            "kafka_bootstrap_servers": stack_endpoints.kafka_bootstrap,
            "smtp_host": smtp_sink.host,
            "smtp_port": smtp_sink.port,
            "smtp_sender": "carebridge@clinic.test",
            "dev_clock": True,
            "dispatch_interval_ms": 100,
            "delivery_backoff_initial_seconds": 1.0,
            "on_call_clinician_id": on_call,
            "on_call_escalation_id": f"{on_call}-escalation",
            # the on-call route the app sets at start (audited as the bootstrap's)
            "on_call_bootstrap_primary_email": f"{on_call}@example.test",
            "on_call_bootstrap_escalation_email": f"{on_call}-escalation@example.test",
            "relay_poll_interval_ms": 100,
            "shutdown_grace_seconds": 5.0,
            "consumer_group": f"notification-{uuid.uuid4()}",
            "consumer_offset_reset": "latest",
        }
        values.update(overrides)
        settings = NotificationSettings(**values)
        app = build(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://notification",
                auth=DevAuth(),  # each request signed as whom it acts for (ADR 0012)
            ) as client:
                if wait_ready:
                    await until_ready(client)
                yield Service(app, client, smtp_sink, settings)

    return start
