"""Load driver of the chaos run: patient journeys over the HTTP APIs, as a careful client.

A journey: contact details -> assessment (with therapy interest, so referral opens a referral)
-> wait until booking knows it -> free slot -> book -> the patient grants care-plan consent
(referral matches a therapist and forms a care team) -> the psychiatrist writes the care plan
twice (versions 1 and 2). The client behaves as a real one would while services die under it:

* reads, PUTs and the assessment POST (with an ``Idempotency-Key``) are retried on another
  replica after a connection error or a 5xx, with backoff;
* a booking whose outcome is unknown (connection lost, 5xx) is looked up by patient before it
  is tried again, and a 409 ``initial_evaluation_already_booked`` is resolved the same way;
* a care-plan write whose outcome is unknown is sent again with the same ``If-Match``: a 409
  whose ETag is the next version says the first one committed (the load is the only writer).

Only *accepted* requests (a 2xx, or a booking found by the lookup) count as promises. Every
loop is bounded in attempts and in time; only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from .dev_auth import DevAuth

VISIT_TYPE = "initial_psychiatric_evaluation"
CONSENT_SCOPE = "care_plan_sharing"
PLAN_VERSIONS = 2  # care-plan writes per journey (versions 1..PLAN_VERSIONS)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class JourneyFailed(Exception):
    """A journey could not finish within its bounds (recorded, not raised further)."""


@dataclass
class LoadConfig:
    run_id: str
    journeys: int
    concurrency: int = 12
    window_s: float = 60.0  # journeys start evenly spread over this window
    deadline_s: float = 900.0  # hard bound for the whole load
    journey_timeout_s: float = 300.0
    state: str = "WY"
    clinicians: int = 10
    therapists: int = 4
    horizon_days: int = 55
    seed: int = 0

    def clinician_ids(self) -> list[str]:
        return [f"cz{self.run_id}-psy-{i}" for i in range(1, self.clinicians + 1)]

    def therapist_ids(self) -> list[str]:
        return [f"cz{self.run_id}-thr-{i}" for i in range(1, self.therapists + 1)]

    def patient_id(self, index: int) -> str:
        return f"cz{self.run_id}-p{index:05d}"


@dataclass
class Journey:
    patient_id: str
    clinician_id: str
    assessment_id: str | None = None
    appointment_id: str | None = None
    booked_clinician: str | None = None
    starts_at: str | None = None
    booked_via_lookup: bool = False
    consent_granted: bool = False
    plan_versions: list[int] = field(default_factory=list)  # care-plan versions accepted
    error: str | None = None
    seconds: float = 0.0


@dataclass
class LoadStats:
    requests: int = 0
    retries: int = 0
    transport_errors: int = 0
    server_errors: int = 0
    unknown_bookings: int = 0
    unknown_plan_writes: int = 0
    slot_conflicts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "transport_errors": self.transport_errors,
            "server_errors": self.server_errors,
            "unknown_booking_outcomes": self.unknown_bookings,
            "unknown_plan_write_outcomes": self.unknown_plan_writes,
            "slot_conflicts": self.slot_conflicts,
            "statuses": dict(self.statuses),
        }


class Client:
    """Round-robin over a service's replicas, with bounded retries for safe calls."""

    def __init__(self, urls: dict[str, list[str]], stats: LoadStats, *, timeout: float = 30.0):
        for base in (u for group in urls.values() for u in group):
            if urlsplit(base).hostname != "127.0.0.1":
                raise ValueError(f"the chaos load only talks to 127.0.0.1, not {base}")
        self._cycles = {name: itertools.cycle(group) for name, group in urls.items()}
        self.stats = stats
        # Each request carries a dev token for the patient, clinician or coordinator it acts for.
        self.http = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=64), auth=DevAuth()
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def once(self, service: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """One attempt; None when the connection failed (the outcome is unknown)."""
        self.stats.requests += 1
        try:
            response = await self.http.request(method, next(self._cycles[service]) + path, **kw)
        except httpx.TransportError:
            self.stats.transport_errors += 1
            return None
        self.stats.statuses[f"{service} {method} {response.status_code}"] += 1
        if response.status_code >= 500:
            self.stats.server_errors += 1
        return response

    async def safe(
        self,
        service: str,
        method: str,
        path: str,
        *,
        attempts: int = 80,
        budget_s: float = 150.0,
        **kw: Any,
    ) -> httpx.Response:
        """Retry a call that is safe to repeat until it gets an answer below 500."""
        started = time.monotonic()
        for attempt in range(attempts):
            response = await self.once(service, method, path, **kw)
            if response is not None and response.status_code < 500:
                return response
            if time.monotonic() - started > budget_s:
                break
            self.stats.retries += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0) * (0.5 + random.random()))
        raise JourneyFailed(f"{method} {service}{path}: no answer after {attempt + 1} attempts")

    async def ok(self, service: str, method: str, path: str, **kw: Any) -> Any:
        response = await self.safe(service, method, path, **kw)
        if response.status_code >= 400:
            raise JourneyFailed(
                f"{method} {service}{path} -> {response.status_code}: {response.text[:300]}"
            )
        return response.json() if response.content else None


def clinician_body(state: str) -> dict[str, Any]:
    """A psychiatrist licensed in `state` only, working nearly around the clock every day."""
    return {
        "role": "psychiatrist",
        "time_zone": "UTC",
        "licences": [{"state": state, "expires_on": None}],
        "working_hours": {day: [{"start": "00:00", "end": "23:30"}] for day in WEEKDAYS},
        "modalities": [],
        "capacity": 10_000,
        "active": True,
    }


def therapist_body(state: str) -> dict[str, Any]:
    """A CBT therapist licensed in `state` with room for every patient of the load."""
    return {"licence_states": [state], "modalities": ["CBT"], "capacity": 10_000, "active": True}


async def set_up(client: Client, config: LoadConfig) -> None:
    """The load's own clinicians, therapists and contact details (idempotent PUTs)."""
    for therapist_id in config.therapist_ids():
        await client.ok("referral", "PUT", f"/v1/therapists/{therapist_id}",
                        json=therapist_body(config.state))  # fmt: skip
        await client.ok("notification", "PUT", f"/v1/contacts/clinician/{therapist_id}",
                        json={"email": f"{therapist_id}@clinicians.example",
                              "preferred_channel": "email"})  # fmt: skip
    for clinician_id in config.clinician_ids():
        await client.ok("booking", "PUT", f"/v1/clinicians/{clinician_id}",
                        json=clinician_body(config.state))  # fmt: skip
        await client.ok("notification", "PUT", f"/v1/contacts/clinician/{clinician_id}",
                        json={"email": f"{clinician_id}@clinicians.example",
                              "preferred_channel": "email"})  # fmt: skip


def assessment_body(patient_id: str, state: str) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "state": state,
        "phq9": [2, 2, 1, 2, 1, 1, 1, 1, 0],
        "gad7": [1, 2, 1, 1, 1, 0, 1],
        "therapy_interest": True,
        "preferred_channel": "email",
    }


async def _wait_eligible(client: Client, patient_id: str, budget_s: float) -> None:
    started = time.monotonic()
    delay = 0.3
    while time.monotonic() - started < budget_s:
        found = await client.ok("booking", "GET", f"/v1/patients/{patient_id}/eligibility")
        if found["assessment_completed"]:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    raise JourneyFailed(f"booking did not learn of {patient_id}'s assessment in {budget_s:.0f}s")


async def _pick_slot(
    client: Client, config: LoadConfig, journey: Journey, rng: random.Random
) -> dict[str, Any] | None:
    day = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(
        days=rng.randint(2, config.horizon_days)
    )
    found = await client.ok("booking", "GET", "/v1/slots", params={
        "state": config.state, "visit_type": VISIT_TYPE, "clinician_id": journey.clinician_id,
        "patient_id": journey.patient_id, "from": day.isoformat(),
        "to": (day + timedelta(days=1)).isoformat(),
    })  # fmt: skip
    slots: list[dict[str, Any]] = found["slots"]
    return rng.choice(slots) if slots else None


async def _lookup_booking(client: Client, patient_id: str) -> dict[str, Any] | None:
    found = await client.ok("booking", "GET", "/v1/appointments", params={"patient_id": patient_id})
    booked = [a for a in found["appointments"] if a["status"] == "booked"]
    return booked[0] if booked else None


def _accept(journey: Journey, appointment: dict[str, Any], *, via_lookup: bool) -> None:
    journey.appointment_id = str(appointment["id"])
    journey.booked_clinician = str(appointment["clinician_id"])
    journey.starts_at = str(appointment["starts_at"])
    journey.booked_via_lookup = via_lookup


async def _book(client: Client, config: LoadConfig, journey: Journey, rng: random.Random) -> None:
    slot: dict[str, Any] | None = None
    for _ in range(25):
        if slot is None:
            slot = await _pick_slot(client, config, journey, rng)
            if slot is None:
                continue
        body = {key: slot[key] for key in ("clinician_id", "visit_type", "starts_at", "state")}
        response = await client.once(
            "booking", "POST", "/v1/appointments", json={"patient_id": journey.patient_id, **body}
        )
        if response is not None and response.status_code == 201:
            _accept(journey, response.json(), via_lookup=False)
            return
        if response is None or response.status_code >= 500:
            # The booking may have committed before the connection died: look before retrying.
            client.stats.unknown_bookings += 1
            await asyncio.sleep(0.5 + rng.random())
            found = await _lookup_booking(client, journey.patient_id)
            if found is not None:
                _accept(journey, found, via_lookup=True)
                return
            client.stats.retries += 1
            continue  # same slot again
        code = response.json().get("code") if response.status_code == 409 else None
        if code == "initial_evaluation_already_booked":
            found = await _lookup_booking(client, journey.patient_id)
            if found is not None:
                _accept(journey, found, via_lookup=True)
                return
        if code in ("slot_taken", "patient_double_booked", "slot_unavailable", "slot_not_free"):
            client.stats.slot_conflicts += 1
            slot = None
            continue
        raise JourneyFailed(f"booking refused: {response.status_code} {response.text[:300]}")
    raise JourneyFailed("no slot could be booked in 25 attempts")


def plan_body(version: int) -> dict[str, Any]:
    """The plan as of `version` + 1: each version differs (an identical plan keeps its version)."""
    return {"therapy_modality": "CBT", "therapy_frequency": {"sessions_per_month": version + 1}}


def _etag_version(response: httpx.Response) -> int | None:
    try:
        return int(response.headers.get("ETag", "").strip('W/"'))
    except ValueError:
        return None


async def _write_plan(client: Client, journey: Journey, version: int, budget_s: float) -> None:
    """The psychiatrist replaces the plan at `version`; records `version + 1` once accepted.

    Until referral learned of the booking (AppointmentBooked) the psychiatrist is refused with
    403 ``not_in_care_team``: that, a lost connection and a 5xx are tried again."""
    path = f"/v1/care-plans/{journey.patient_id}"
    headers = {"If-Match": f'"{version}"', "X-Clinician-Id": str(journey.booked_clinician)}
    started = time.monotonic()
    delay = 0.3
    while time.monotonic() - started < budget_s:
        response = await client.once("referral", "PUT", path, json=plan_body(version),
                                     headers=headers)  # fmt: skip
        if response is not None and response.status_code == 200:
            journey.plan_versions.append(version + 1)
            return
        if response is not None and response.status_code == 409:
            if _etag_version(response) == version + 1:  # an earlier try committed
                journey.plan_versions.append(version + 1)
                return
            raise JourneyFailed(f"care plan v{version}: 409 {response.text[:300]}")
        if response is None or response.status_code >= 500:
            client.stats.unknown_plan_writes += 1
        elif not (response.status_code == 403 and "not_in_care_team" in response.text):
            raise JourneyFailed(f"care plan v{version}: {response.status_code} "
                                f"{response.text[:300]}")  # fmt: skip
        client.stats.retries += 1
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    raise JourneyFailed(f"care plan v{version} not accepted in {budget_s:.0f}s")


async def _collaborate(client: Client, config: LoadConfig, journey: Journey) -> None:
    """Consent (referral matches a therapist), then the psychiatrist's care-plan versions."""
    await client.ok("referral", "POST", f"/v1/patients/{journey.patient_id}/consents",
                    json={"scope": CONSENT_SCOPE})  # fmt: skip
    journey.consent_granted = True
    for version in range(PLAN_VERSIONS):
        await _write_plan(client, journey, version, budget_s=config.journey_timeout_s / 3)


async def journey(client: Client, config: LoadConfig, index: int) -> Journey:
    rng = random.Random(f"{config.seed}-{index}")
    clinicians = config.clinician_ids()
    state = Journey(config.patient_id(index), clinicians[index % len(clinicians)])
    started = time.monotonic()
    try:
        async with asyncio.timeout(config.journey_timeout_s):
            pid = state.patient_id
            await client.ok("notification", "PUT", f"/v1/contacts/patient/{pid}",
                            json={"email": f"{pid}@patients.example",
                                  "preferred_channel": "email"})  # fmt: skip
            key = f"chaos-{config.run_id}-{index}-{uuid.uuid4().hex[:6]}"
            result = await client.ok(
                "intake", "POST", "/v1/assessments",
                json=assessment_body(pid, config.state), headers={"Idempotency-Key": key},
            )  # fmt: skip
            state.assessment_id = str(result["assessment_id"])
            await _wait_eligible(client, pid, budget_s=config.journey_timeout_s / 2)
            await _book(client, config, state, rng)
            await _collaborate(client, config, state)
    except JourneyFailed as exc:
        state.error = str(exc)
    except TimeoutError:
        state.error = f"journey timed out after {config.journey_timeout_s:.0f}s"
    state.seconds = time.monotonic() - started
    return state


async def run_load(client: Client, config: LoadConfig) -> list[Journey]:
    """Start `journeys` journeys evenly over `window_s`, at most `concurrency` at a time."""
    gate = asyncio.Semaphore(config.concurrency)
    spacing = config.window_s / max(config.journeys, 1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(index: int) -> Journey:
        await asyncio.sleep(max(0.0, t0 + index * spacing - loop.time()))
        async with gate:
            return await journey(client, config, index)

    async with asyncio.timeout(config.deadline_s):
        return list(await asyncio.gather(*(one(i) for i in range(config.journeys))))
