"""Open-loop patient journeys over the HTTP APIs, at a fixed arrival rate.

Journey i is due at ``t0 + i / rate`` by the wall clock and starts then, whether or not earlier
journeys have finished (an open-loop generator: a slow system meets more concurrent patients,
as it would in life, instead of a slower generator). How late each start was, and how many
journeys were in flight, show whether the generator itself kept up.

A journey: contact details -> assessment -> free slots of its clinician on its day -> book,
retried (10 ms, growing to 100 ms) while booking answers ``assessment_required`` because it has
not consumed the AssessmentCompleted yet: the patient books as soon as booking accepts them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from carebridge_bench.lean_http import HttpError, LeanHttp, Response
from carebridge_devstack.chaos_load import assessment_body, clinician_body
from carebridge_devstack.dev_auth import infer_actor
from carebridge_devstack.signer import TokenCache

STATE = "NY"
VISIT_TYPE = "initial_psychiatric_evaluation"
SLOT_CONFLICTS = frozenset(
    {"slot_taken", "patient_double_booked", "slot_unavailable", "slot_not_free"}
)
FIRST_DAY = 2  # days ahead of the first bookable day used
DAYS = 53  # bookable days used (the booking horizon is 60)


class JourneyFailed(Exception):
    """A journey ended without a booking (recorded on the journey, not raised further)."""


@dataclass
class Journey:
    index: int
    patient_id: str
    clinician_id: str
    day: int
    scheduled: float  # epoch seconds
    started: float | None = None
    assess_sent: float | None = None
    assess_done: float | None = None
    book_sent: float | None = None  # the accepted booking request
    book_done: float | None = None
    not_yet_eligible: int = 0  # booking attempts answered assessment_required
    slot_conflicts: int = 0
    error: str | None = None

    @property
    def booked(self) -> bool:
        return self.book_sent is not None and self.error is None

    @property
    def email(self) -> str:
        return f"{self.patient_id}@patients.example"


@dataclass
class StepRun:
    rate: float
    seconds: float
    journeys: list[Journey] = field(default_factory=list)
    max_in_flight: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0


class JourneyRunner(Protocol):
    def plan(self, step: int, index: int, scheduled: float) -> Journey: ...

    async def run(self, journey: Journey, timeout: float) -> None: ...  # noqa: ASYNC109


class JourneyClient:
    """The generator's HTTP side: kept-alive connections (`LeanHttp`), a dev token for whoever
    acts.

    Tokens are chosen by the dev stack's rules (`infer_actor`) and cached per person; unlike
    `DevAuth` it does not read every response body again, to keep the generator's own CPU (it
    shares the machine with what it measures) low.
    """

    def __init__(self, urls: dict[str, str], *, run_id: str, clinicians: int) -> None:
        self.urls = urls
        self.run_id = run_id
        self.clinician_ids = [f"bn{run_id}-psy-{i:03d}" for i in range(clinicians)]
        self.tokens = TokenCache()
        self.http = LeanHttp(timeout=30.0)

    async def close(self) -> None:
        await self.http.close()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        role, subject = infer_actor(method, path, params or {}, json or {}, {})
        return await self.http.request(
            method,
            self.urls[service],
            path,
            json_body=json,
            params=params,
            headers=f"Authorization: Bearer {self.tokens.token(role, subject)}\r\n",
        )

    async def ok(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = await self.call(service, method, path, json=json, params=params)
        if response.status_code >= 400:
            raise JourneyFailed(f"{method} {service}{path} -> {response.status_code}")
        return response.json() if response.content else None

    async def set_up(self) -> None:
        """The run's psychiatrists (licensed in STATE, working all day) and their contacts."""
        for clinician_id in self.clinician_ids:
            await self.ok(
                "booking", "PUT", f"/v1/clinicians/{clinician_id}", json=clinician_body(STATE)
            )
            await self.ok(
                "notification",
                "PUT",
                f"/v1/contacts/clinician/{clinician_id}",
                json={"email": f"{clinician_id}@clinicians.example", "preferred_channel": "email"},
            )

    def plan(self, step: int, index: int, scheduled: float) -> Journey:
        """Journey `index` of a run gets its own clinician-day, so concurrent journeys rarely
        compete for a slot (a conflict only makes a journey take the next free one)."""
        window = index % (len(self.clinician_ids) * DAYS)
        return Journey(
            index=index,
            patient_id=f"bn{self.run_id}-{step:02d}-{index:06d}",
            clinician_id=self.clinician_ids[window % len(self.clinician_ids)],
            day=FIRST_DAY + window // len(self.clinician_ids),
            scheduled=scheduled,
        )

    async def run(self, journey: Journey, timeout: float) -> None:  # noqa: ASYNC109
        journey.started = time.time()
        try:
            async with asyncio.timeout(timeout):
                await self._walk(journey)
        except JourneyFailed as exc:
            journey.error = str(exc)
        except TimeoutError:
            journey.error = f"no booking after {timeout:.0f}s"
        except HttpError as exc:
            journey.error = f"{type(exc).__name__}: {exc}"

    async def _walk(self, journey: Journey) -> None:
        pid = journey.patient_id
        await self.ok(
            "notification",
            "PUT",
            f"/v1/contacts/patient/{pid}",
            json={"email": journey.email, "preferred_channel": "email"},
        )
        journey.assess_sent = time.time()
        response = await self.call(
            "intake", "POST", "/v1/assessments", json=assessment_body(pid, STATE)
        )
        journey.assess_done = time.time()
        if response.status_code != 201:
            raise JourneyFailed(f"assessment -> {response.status_code}")
        slots = await self._free_slots(journey)
        await self._book(journey, slots)

    async def _free_slots(self, journey: Journey) -> list[dict[str, Any]]:
        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            days=journey.day
        )
        found = await self.ok(
            "booking",
            "GET",
            "/v1/slots",
            params={
                "state": STATE,
                "visit_type": VISIT_TYPE,
                "clinician_id": journey.clinician_id,
                "patient_id": journey.patient_id,
                "from": day.isoformat(),
                "to": (day + timedelta(days=1)).isoformat(),
            },
        )
        slots: list[dict[str, Any]] = found["slots"]
        if not slots:
            raise JourneyFailed(f"no free slot for {journey.clinician_id} on day {journey.day}")
        return slots

    async def _book(self, journey: Journey, slots: list[dict[str, Any]]) -> None:
        delay = 0.01
        position = 0
        while True:
            slot = slots[position]
            body = {key: slot[key] for key in ("clinician_id", "visit_type", "starts_at", "state")}
            sent = time.time()
            response = await self.call(
                "booking",
                "POST",
                "/v1/appointments",
                json={"patient_id": journey.patient_id, **body},
            )
            if response.status_code == 201:
                journey.book_sent, journey.book_done = sent, time.time()
                return
            code = response.json().get("code") if response.status_code == 409 else None
            if code == "assessment_required":
                journey.not_yet_eligible += 1
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.1)
            elif code in SLOT_CONFLICTS and position + 1 < len(slots):
                journey.slot_conflicts += 1
                position += 1
            else:
                raise JourneyFailed(f"booking -> {response.status_code} {code or ''}".strip())


async def run_step(
    client: JourneyRunner,
    *,
    step: int,
    rate: float,
    seconds: float,
    first_index: int,
    journey_timeout: float = 60.0,
    on_start: Callable[[], None] | None = None,
) -> StepRun:
    """Start journeys at `rate` per second for `seconds`; wait for every one to end."""
    count = max(1, round(rate * seconds))
    run = StepRun(rate=rate, seconds=seconds)
    t0 = time.time() + 0.2
    run.started_at = t0
    tasks: list[asyncio.Task[None]] = []
    in_flight = 0

    async def one(journey: Journey) -> None:
        nonlocal in_flight
        in_flight += 1
        run.max_in_flight = max(run.max_in_flight, in_flight)
        try:
            await client.run(journey, journey_timeout)
        finally:
            in_flight -= 1

    for i in range(count):
        journey = client.plan(step, first_index + i, t0 + i / rate)
        run.journeys.append(journey)
        wait = journey.scheduled - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(journey)))
        if on_start is not None:
            on_start()
    await asyncio.gather(*tasks)
    run.finished_at = time.time()
    return run
