"""The four services in-process against the real Kafka and PostgreSQL, and a small practice in
them built through their APIs: patient A treated by psychiatrist `psy` (a fulfilled first visit,
a referral, a care team with therapist `thr`, a care plan), patient B treated by `psy2`.

Every request here carries an explicit token (`bearer`): nothing is inferred.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from carebridge_booking.app import BookingSettings
from carebridge_booking.app import build as build_booking
from carebridge_contracts.services import SERVICES
from carebridge_devstack.endpoints import (
    StackEndpoints,
    create_database,
    drop_database,
    service_database_url,
)
from carebridge_devstack.testing import bearer, eventually, until_ready
from carebridge_intake.app import IntakeSettings
from carebridge_intake.app import build as build_intake
from carebridge_notification.app import NotificationSettings
from carebridge_notification.app import build as build_notification
from carebridge_referral.app import ReferralSettings
from carebridge_referral.app import build as build_referral
from carebridge_shared.auth import Role

STATE = "WY"
ALL_DAY = {
    day: [{"start": "00:00", "end": "23:30"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}
Principal = tuple[Role, str]
ON_CALL_EMAIL = "on-call@clinicians.example"


def settings_for(service: str, database_url: str, kafka: str) -> Any:
    """Settings of an app under test: its own consumer group from the end of each topic."""
    common: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap_servers": kafka,
        "relay_poll_interval_ms": 100,
        "consumer_group": f"{service}-authz-{uuid.uuid4().hex[:10]}",
        "consumer_offset_reset": "latest",
    }
    if service == "intake":
        return IntakeSettings(**common)
    if service == "booking":
        return BookingSettings(**common, clinician_seed_file="", allow_outcome_before_start=True)
    if service == "referral":
        return ReferralSettings(**common, therapist_seed_file="")
    return NotificationSettings(
        **common,
        dev_clock=True,
        dispatcher_enabled=False,
        on_call_bootstrap_primary_email=ON_CALL_EMAIL,  # the route ops would set (ADR 0015)
    )


def build_app(service: str, settings: Any) -> FastAPI:
    builders = {
        "intake": build_intake,
        "booking": build_booking,
        "referral": build_referral,
        "notification": build_notification,
    }
    app: FastAPI = builders[service](settings)
    return app


@dataclass
class World:
    """The running apps, the people in them and the records the matrix reaches for."""

    clients: dict[str, httpx.AsyncClient]
    run: str
    patient: str = ""  # A: every "own record" cell is about A unless a case makes a fresh one
    other_patient: str = ""  # B
    psychiatrist: str = ""  # treats A
    other_psychiatrist: str = ""  # treats B, not A
    stranger: str = ""  # a clinician who treats nobody
    therapist: str = ""  # A's therapist, with A's care_plan_sharing consent
    coordinator: str = "coord-1"
    ops: str = "ops-1"
    ids: dict[str, str] = field(default_factory=dict)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.run}-{uuid.uuid4().hex[:6]}"

    async def call(
        self, service: str, method: str, path: str, who: Principal, **kwargs: Any
    ) -> httpx.Response:
        headers = {**bearer(*who), **kwargs.pop("headers", {})}
        return await self.clients[service].request(method, path, headers=headers, **kwargs)

    async def ok(self, service: str, method: str, path: str, who: Principal, **kw: Any) -> Any:
        response = await self.call(service, method, path, who, **kw)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json() if response.content else None

    # --- building blocks, each as the principal who would do it ------------------------

    async def put_clinician(self, clinician_id: str, role: str = "psychiatrist") -> None:
        body = {"role": role, "time_zone": "UTC", "licences": [{"state": STATE}]}
        body["working_hours"] = ALL_DAY  # type: ignore[assignment]
        await self.ok("booking", "PUT", f"/v1/clinicians/{clinician_id}", self.as_coordinator(),
                      json=body)  # fmt: skip

    async def assessed(self, patient_id: str) -> str:
        """The patient's assessment (therapy_interest false: no intake referral), consumed by
        booking; returns its id."""
        result = await self.ok("intake", "POST", "/v1/assessments", ("patient", patient_id),
                               json=assessment_body(patient_id))  # fmt: skip

        async def eligible() -> bool:
            found = await self.ok("booking", "GET", f"/v1/patients/{patient_id}/eligibility",
                                  ("patient", patient_id))  # fmt: skip
            return bool(found["assessment_completed"])

        await eventually(eligible, timeout=60, what=f"booking to learn {patient_id} was assessed")
        return str(result["assessment_id"])

    async def free_slot(self, clinician_id: str, visit_type: str) -> str:
        start = datetime.now(UTC) + timedelta(hours=2)
        found = await self.ok("booking", "GET", "/v1/slots", self.as_coordinator(), params={
            "state": STATE, "visit_type": visit_type, "clinician_id": clinician_id,
            "from": start.isoformat(), "to": (start + timedelta(days=10)).isoformat(),
        })  # fmt: skip
        assert found["slots"], f"no free {visit_type} slot for {clinician_id}"
        return str(found["slots"][0]["starts_at"])

    async def book(
        self,
        patient_id: str,
        clinician_id: str,
        visit_type: str = "psychiatric_follow_up",
        who: Principal | None = None,
    ) -> dict[str, Any]:
        body = {
            "patient_id": patient_id,
            "clinician_id": clinician_id,
            "visit_type": visit_type,
            "starts_at": await self.free_slot(clinician_id, visit_type),
            "state": STATE,
        }
        booked: dict[str, Any] = await self.ok(
            "booking", "POST", "/v1/appointments", who or ("patient", patient_id), json=body
        )
        return booked

    async def refer(self, patient_id: str, psychiatrist: str) -> dict[str, Any]:
        """The psychiatrist's referral, once referral learnt of their psychiatric visit with
        the patient (only one of the patient's psychiatrists may refer them)."""
        await self.until_allowed("referral", f"/v1/patients/{patient_id}/consents",
                                 ("clinician", psychiatrist))  # fmt: skip
        body = {"patient_id": patient_id, "state": STATE, "modality": "CBT",
                "urgency": "routine", "requesting_clinician_id": psychiatrist}  # fmt: skip
        referral: dict[str, Any] = await self.ok(
            "referral", "POST", "/v1/referrals", ("clinician", psychiatrist), json=body
        )
        return referral

    async def patient_of(self, psychiatrist: str) -> str:
        """A new patient, assessed, with a first visit booked with `psychiatrist`, known to
        referral: the psychiatrist may refer them."""
        patient = self.new_id("px")
        await self.assessed(patient)
        await self.book(patient, psychiatrist, "initial_psychiatric_evaluation")
        await self.until_allowed("referral", f"/v1/patients/{patient}/consents",
                                 ("clinician", psychiatrist))  # fmt: skip
        return patient

    async def set_on_call_route(self) -> None:
        await self.ok("notification", "PUT", "/v1/on-call-route", ("ops", self.ops), json={
            "primary": {"email": ON_CALL_EMAIL}, "escalation": {"email": ON_CALL_EMAIL},
        })  # fmt: skip

    async def consent(self, patient_id: str) -> None:
        await self.ok("referral", "POST", f"/v1/patients/{patient_id}/consents",
                      ("patient", patient_id), json={"scope": "care_plan_sharing"})  # fmt: skip

    async def plan_version(self, patient_id: str) -> int:
        plan = await self.ok("referral", "GET", f"/v1/care-plans/{patient_id}",
                             ("clinician", self.psychiatrist))  # fmt: skip
        return int(plan["version"])

    async def until_allowed(self, service: str, path: str, who: Principal) -> None:
        """Until a service has learnt (from another service's events) that `who` may see it."""

        async def allowed() -> bool:
            return (await self.call(service, "GET", path, who)).status_code == 200

        await eventually(allowed, timeout=60, what=f"{service} to let {who} read {path}")

    def as_coordinator(self) -> Principal:
        return ("coordinator", self.coordinator)

    @staticmethod
    def assessment_body(patient_id: str) -> dict[str, Any]:
        return assessment_body(patient_id)

    @staticmethod
    def repeat_measure_body(patient_id: str) -> dict[str, Any]:
        """A repeat PHQ-9 / GAD-7 (intake's POST /v1/outcome-measures), no risk."""
        body = assessment_body(patient_id)
        return {key: body[key] for key in ("patient_id", "state", "phq9", "gad7")}


def assessment_body(patient_id: str) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "state": STATE,
        "phq9": [1, 1, 1, 1, 1, 1, 1, 1, 0],
        "gad7": [1, 1, 1, 1, 1, 1, 1],
        "therapy_interest": False,
        "preferred_channel": "email",
    }


async def populate(world: World) -> None:
    w = world
    w.patient, w.other_patient = w.new_id("pa"), w.new_id("pb")
    w.psychiatrist, w.other_psychiatrist = w.new_id("psy"), w.new_id("psy2")
    w.stranger, w.therapist = w.new_id("psy-stranger"), w.new_id("thr")
    for clinician in (w.psychiatrist, w.other_psychiatrist, w.stranger):
        await w.put_clinician(clinician)
    await w.put_clinician(w.therapist, role="therapist")
    await w.ok("referral", "PUT", f"/v1/therapists/{w.therapist}", w.as_coordinator(), json={
        "licence_states": [STATE], "modalities": ["CBT"], "capacity": 100, "active": True,
    })  # fmt: skip

    w.ids["assessment"] = await w.assessed(w.patient)
    await w.assessed(w.other_patient)
    first = await w.book(w.patient, w.psychiatrist, "initial_psychiatric_evaluation")
    w.ids["appointment"] = str(first["id"])
    await w.book(w.other_patient, w.other_psychiatrist, "initial_psychiatric_evaluation")
    await w.ok("booking", "POST", f"/v1/appointments/{first['id']}/complete",
               ("clinician", w.psychiatrist))  # fmt: skip

    referral = await w.refer(w.patient, w.psychiatrist)
    w.ids["referral"] = str(referral["id"])
    await w.consent(w.patient)
    team = await w.ok("referral", "GET", f"/v1/patients/{w.patient}/care-team",
                      ("patient", w.patient))  # fmt: skip
    assert team["therapist_id"] == w.therapist
    await w.ok("referral", "PUT", f"/v1/care-plans/{w.patient}", ("clinician", w.psychiatrist),
               json={"goals": ["sleep seven hours"]}, headers={"If-Match": '"0"'})  # fmt: skip
    await w.ok("notification", "PUT", f"/v1/contacts/patient/{w.patient}", ("patient", w.patient),
               json={"email": "a@patients.example"})  # fmt: skip
    await w.ok("notification", "PUT", f"/v1/contacts/clinician/{w.psychiatrist}",
               ("clinician", w.psychiatrist), json={"email": "psy@clinicians.example"})  # fmt: skip
    # Intake learns who treats A from booking's and referral's events.
    assessment = f"/v1/assessments/{w.ids['assessment']}"
    await w.until_allowed("intake", assessment, ("clinician", w.psychiatrist))
    await w.until_allowed("intake", assessment, ("clinician", w.therapist))


@pytest.fixture
def unstarted_apps() -> dict[str, FastAPI]:
    """Each service's app as it would serve (notification with its dev clock), not started."""
    return {
        service: build_app(service, settings_for(service, "postgresql://unused/db", "unused:9092"))
        for service in SERVICES
    }


@pytest.fixture(scope="module")
async def world(stack_endpoints: StackEndpoints) -> AsyncIterator[World]:
    database = create_database(stack_endpoints.database_url, prefix="authz_")
    kafka = stack_endpoints.kafka_bootstrap
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}
            for service in SERVICES:
                url = service_database_url(database, service)
                app = build_app(service, settings_for(service, url, kafka))
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients[service] = await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app),
                        base_url=f"http://{service}",
                        timeout=60,
                    )
                )
            for client in clients.values():
                await until_ready(client)
            world = World(clients, uuid.uuid4().hex[:6])
            await populate(world)
            yield world
    finally:
        drop_database(database, via=stack_endpoints.database_url)
