"""The intake service in-process against real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from carebridge_contracts import (
    HEADER_TYPE,
    HEADER_VERSION,
    AppointmentBooked,
    AssessmentCompleted,
    Envelope,
    OutcomeMeasured,
    SafetyRiskFlagged,
    SymptomsWorsened,
    Topic,
    parse,
)
from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.testing import Record, bearer, eventually, produce, read_topic, wrap
from carebridge_intake import store as intake_store
from carebridge_intake.app import IntakeSettings, build
from carebridge_shared.context import ServiceContext

pytestmark = pytest.mark.integration

TOPIC = str(Topic.ASSESSMENTS)
CRISIS = (
    "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline). "
    "If you are in immediate danger, call 911."
)
NO_CSSRS_RISK = {
    "q1_wish_to_be_dead": False,
    "q2_suicidal_thoughts": False,
    "q3_method": False,
    "q4_intent": False,
    "q5_plan": False,
    "q6_behaviour": False,
}


@dataclass
class Intake:
    client: httpx.AsyncClient
    context: ServiceContext
    bootstrap: str

    async def post(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return await self.client.post("/v1/assessments", json=body, headers=headers)

    async def stored(self, patient: str) -> int:
        count: int = await self.context.pool.fetchval(
            "SELECT count(*) FROM assessments WHERE patient_id = $1", patient
        )
        return count

    async def staged(self, patient: str) -> int:
        count: int = await self.context.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE message_key = $1", patient
        )
        return count

    async def published(self, patient: str, expect: int) -> list[Record]:
        """The patient's records on the assessments topic; waits for `expect`, then for extras."""
        return await read_topic(
            self.bootstrap,
            TOPIC,
            where=lambda r: r.key == patient.encode(),
            expect=expect,
            timeout=30,
            settle=1.5,
        )


@pytest.fixture
async def intake(
    service_database_url: Callable[[str], str], stack_endpoints: Any
) -> AsyncIterator[Intake]:
    settings = IntakeSettings(
        database_url=service_database_url("intake"),  # intake's own role (ADR 0011)
        kafka_bootstrap_servers=stack_endpoints.kafka_bootstrap,
        relay_poll_interval_ms=100,
        # A group of its own from the end of each topic: other runs' visits are not replayed.
        consumer_group=f"intake-test-{uuid.uuid4().hex[:12]}",
        consumer_offset_reset="latest",
    )
    app = build(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://intake",
            auth=DevAuth(),  # each request signed as whom it acts for (ADR 0012)
        ) as client,
    ):
        yield Intake(client, app.state.context, stack_endpoints.kafka_bootstrap)


def new_patient() -> str:
    return f"pat-{uuid.uuid4()}"


def body(patient: str, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "patient_id": patient,
        "state": "NY",
        "phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0],  # 11: moderate, item 9 = 0
        "gad7": [1, 1, 1, 1, 1, 1, 0],  # 6: mild
        "cssrs": NO_CSSRS_RISK,
        "therapy_interest": True,
        "preferred_channel": "email",
    }
    payload.update(overrides)
    return payload


def envelopes(records: list[Record]) -> list[Envelope]:
    return sorted((Envelope.from_bytes(r.value) for r in records), key=lambda e: e.sequence)


async def test_valid_assessment_is_stored_and_published_in_sequence(intake: Intake) -> None:
    patient = new_patient()
    correlation = uuid.uuid4()
    response = await intake.client.post(
        "/v1/assessments", json=body(patient), headers={"X-Correlation-ID": str(correlation)}
    )

    assert response.status_code == 201, response.text
    result = response.json()
    assert result["patient_id"] == patient
    assert (result["phq9_total"], result["phq9_band"]) == (11, "moderate")
    assert (result["gad7_total"], result["gad7_band"]) == (6, "mild")
    assert result["item9_positive"] is False
    assert result["cssrs_imminent_risk"] is False
    assert result["safety"] is None
    first_id = uuid.UUID(result["assessment_id"])

    row = await intake.context.pool.fetchrow(
        "SELECT phq9_answers, gad7_answers, cssrs_q4_intent, phq9_total, completed_at"
        " FROM assessments WHERE assessment_id = $1",
        first_id,
    )
    assert row is not None
    assert row["phq9_answers"] == [1, 2, 1, 2, 1, 1, 2, 1, 0]
    assert row["gad7_answers"] == [1, 1, 1, 1, 1, 1, 0]
    assert row["cssrs_q4_intent"] is False
    assert row["phq9_total"] == 11

    [record] = await intake.published(patient, expect=1)
    assert record.key == patient.encode()
    assert record.headers[HEADER_TYPE] == b"AssessmentCompleted"
    assert record.headers[HEADER_VERSION] == b"1"
    envelope, event = parse(record.value)
    assert isinstance(event, AssessmentCompleted)
    assert (envelope.sequence, envelope.subject, envelope.producer) == (1, patient, "intake")
    # The server's correlation id (ADR 0014), not the caller's: it is the response's header.
    assert envelope.correlation_id == uuid.UUID(response.headers["X-Correlation-ID"])
    assert envelope.correlation_id != correlation
    assert event.assessment_id == first_id
    assert (event.phq9_total, event.phq9_band, event.gad7_total, event.gad7_band) == (
        11,
        "moderate",
        6,
        "mild",
    )
    assert event.completed_at == row["completed_at"]

    second = await intake.post(body(patient, phq9=[3] * 8 + [0], state="CA"))
    assert second.status_code == 201, second.text
    assert second.json()["phq9_band"] == "severe"
    records = await intake.published(patient, expect=2)
    assert [(e.sequence, e.type) for e in envelopes(records)] == [
        (1, "AssessmentCompleted"),
        (2, "AssessmentCompleted"),
    ]
    assert envelopes(records)[1].data["assessment_id"] == second.json()["assessment_id"]
    assert await intake.stored(patient) == 2


async def test_item9_risk_emits_safety_risk_flagged_and_shows_988(intake: Intake) -> None:
    patient = new_patient()
    response = await intake.post(body(patient, phq9=[0] * 8 + [1], cssrs=None))

    assert response.status_code == 201, response.text
    result = response.json()
    assert result["item9_positive"] is True
    assert result["phq9_band"] == "minimal"  # the flag stands whatever the total
    assert result["cssrs_imminent_risk"] is False
    safety = result["safety"]
    assert safety["crisis_message"] == CRISIS
    assert safety["reasons"] == ["phq9_item9"]
    assert safety["imminent"] is False
    assert safety["self_booking_paused"] is False
    assert safety["note"] is None

    records = await intake.published(patient, expect=2)
    assert [r.headers[HEADER_TYPE] for r in records] == [
        b"AssessmentCompleted",
        b"SafetyRiskFlagged",
    ]
    completed, flagged = (parse(r.value) for r in records)
    assert completed[0].sequence == 1 and flagged[0].sequence == 2
    assert isinstance(flagged[1], SafetyRiskFlagged)
    assert flagged[1].reasons == ["phq9_item9"]
    assert flagged[1].imminent is False
    assert str(flagged[1].assessment_id) == result["assessment_id"]


@pytest.mark.parametrize(
    ("cssrs", "reasons"),
    [
        ({**NO_CSSRS_RISK, "q2_suicidal_thoughts": True, "q4_intent": True}, ["cssrs_q4"]),
        ({**NO_CSSRS_RISK, "q2_suicidal_thoughts": True, "q5_plan": True}, ["cssrs_q5"]),
        (
            {**NO_CSSRS_RISK, "q6_behaviour": True, "q6_within_past_3_months": True},
            ["cssrs_recent_behaviour"],
        ),
    ],
)
async def test_cssrs_imminent_risk_pauses_self_booking(
    intake: Intake, cssrs: dict[str, bool], reasons: list[str]
) -> None:
    patient = new_patient()
    response = await intake.post(body(patient, cssrs=cssrs))

    assert response.status_code == 201, response.text
    result = response.json()
    assert result["cssrs_imminent_risk"] is True
    safety = result["safety"]
    assert safety["crisis_message"] == CRISIS
    assert safety["imminent"] is True
    assert safety["urgent_clinician_review"] is True
    assert safety["self_booking_paused"] is True
    assert "urgently" in safety["note"] and "Self-booking is paused" in safety["note"]
    assert safety["reasons"] == reasons

    records = await intake.published(patient, expect=2)
    completed, flagged = (parse(r.value)[1] for r in records)
    assert isinstance(completed, AssessmentCompleted) and completed.cssrs_imminent_risk
    assert isinstance(flagged, SafetyRiskFlagged)
    assert flagged.imminent is True
    assert flagged.reasons == reasons


async def test_lifetime_behaviour_only_is_not_imminent(intake: Intake) -> None:
    patient = new_patient()
    cssrs = {**NO_CSSRS_RISK, "q6_behaviour": True, "q6_within_past_3_months": False}
    response = await intake.post(body(patient, cssrs=cssrs))
    assert response.status_code == 201, response.text
    assert response.json()["cssrs_imminent_risk"] is False
    assert response.json()["safety"] is None
    [record] = await intake.published(patient, expect=1)
    assert record.headers[HEADER_TYPE] == b"AssessmentCompleted"


INVALID = [
    pytest.param({"phq9": [1] * 8}, "phq9", "at least 9", id="phq9-8-items"),
    pytest.param({"phq9": [1] * 10}, "phq9", "at most 9", id="phq9-10-items"),
    pytest.param({"gad7": [1] * 8}, "gad7", "at most 7", id="gad7-8-items"),
    pytest.param(
        {"phq9": [0, 0, 0, 4, 0, 0, 0, 0, 0]},
        "phq9.3",
        "less than or equal to 3",
        id="phq9-answer-4",
    ),
    pytest.param(
        {"gad7": [0, -1, 0, 0, 0, 0, 0]},
        "gad7.1",
        "greater than or equal to 0",
        id="gad7-answer-negative",
    ),
    pytest.param({"phq9": [0] * 8 + [True]}, "phq9.8", "valid integer", id="phq9-bool-answer"),
    pytest.param({"gad7": [0] * 6 + ["2"]}, "gad7.6", "valid integer", id="gad7-string-answer"),
    pytest.param({"state": "ZZ"}, "state", "not a US state", id="unknown-state"),
    pytest.param({"state": "ny"}, "state", "pattern", id="lowercase-state"),
    pytest.param(
        {"favourite_colour": "blue"}, "favourite_colour", "Extra inputs", id="unknown-field"
    ),
    pytest.param({"phq9": None}, "phq9", "valid list", id="null-phq9"),
    pytest.param(
        {"preferred_channel": "pigeon"},
        "preferred_channel",
        "'email' or 'sms'",
        id="unknown-channel",
    ),
    pytest.param(
        {"patient_id": "jane@example.com"}, "patient_id", "pattern", id="patient-id-with-at"
    ),
    pytest.param(
        {"cssrs": {**NO_CSSRS_RISK, "q7": True}},
        "cssrs.q7",
        "Extra inputs",
        id="cssrs-unknown-item",
    ),
    pytest.param(
        {"cssrs": {**NO_CSSRS_RISK, "q6_behaviour": True}},
        "cssrs",
        "q6_within_past_3_months is required",
        id="cssrs-behaviour-without-timing",
    ),
]


@pytest.mark.parametrize(("override", "field", "reason"), INVALID)
async def test_invalid_assessment_is_422_and_stores_and_publishes_nothing(
    intake: Intake, override: dict[str, Any], field: str, reason: str
) -> None:
    patient = new_patient()
    response = await intake.post(body(patient, **override))
    await _assert_rejected(intake, patient, response, field, reason)


@pytest.mark.parametrize("missing", ["patient_id", "state", "phq9", "gad7", "therapy_interest"])
async def test_missing_field_is_422_and_stores_and_publishes_nothing(
    intake: Intake, missing: str
) -> None:
    patient = new_patient()
    payload = body(patient)
    del payload[missing]
    response = await intake.post(payload)
    await _assert_rejected(intake, patient, response, missing, "Field required")


async def _assert_rejected(
    intake: Intake, patient: str, response: httpx.Response, field: str, reason: str
) -> None:
    assert response.status_code == 422, response.text
    result = response.json()
    assert result["detail"] == "invalid request"
    assert any(e["field"] == field and reason in e["reason"] for e in result["errors"]), result
    assert await intake.stored(patient) == 0
    assert await intake.staged(patient) == 0
    assert await intake.context.pool.fetchval("SELECT count(*) FROM assessments") == 0
    assert await intake.context.pool.fetchval("SELECT count(*) FROM outbox") == 0

    # A valid assessment afterwards is the patient's first and only event on the topic.
    accepted = await intake.post(body(patient))
    assert accepted.status_code == 201, accepted.text
    [record] = await intake.published(patient, expect=1)
    envelope = Envelope.from_bytes(record.value)
    assert envelope.sequence == 1
    assert envelope.data["assessment_id"] == accepted.json()["assessment_id"]


async def test_get_returns_stored_scores_and_404_when_unknown(intake: Intake) -> None:
    patient = new_patient()
    created = await intake.post(
        body(patient, phq9=[3] * 9, cssrs={**NO_CSSRS_RISK, "q5_plan": True})
    )
    assert created.status_code == 201, created.text
    assessment_id = created.json()["assessment_id"]

    found = await intake.client.get(f"/v1/assessments/{assessment_id}")
    assert found.status_code == 200, found.text
    assert found.json() == created.json()
    assert found.json()["phq9_total"] == 27
    assert found.json()["safety"]["reasons"] == ["phq9_item9", "cssrs_q5"]
    assert "phq9" not in found.json() and "cssrs" not in found.json()

    unknown = uuid.uuid4()
    missing = await intake.client.get(f"/v1/assessments/{unknown}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "assessment_not_found"

    malformed = await intake.client.get("/v1/assessments/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "path.assessment_id"


async def test_idempotency_key_replays_the_original_and_emits_nothing_new(
    intake: Intake,
) -> None:
    patient = new_patient()
    key = f"key-{uuid.uuid4()}"
    first = await intake.post(body(patient, phq9=[0] * 8 + [2]), key=key)
    assert first.status_code == 201, first.text

    retry = await intake.post(body(patient, phq9=[0] * 8 + [2]), key=key)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"

    changed = await intake.post(body(patient, phq9=[1] * 9), key=key)
    assert changed.status_code == 409, changed.text
    assert changed.json()["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in changed.json()["message"]

    assert await intake.stored(patient) == 1
    records = await intake.published(patient, expect=2)  # AssessmentCompleted + SafetyRiskFlagged
    assert {Envelope.from_bytes(r.value).data["assessment_id"] for r in records} == {
        first.json()["assessment_id"]
    }
    assert [Envelope.from_bytes(r.value).sequence for r in records] == [1, 2]

    # The key is scoped to the patient: another patient may use the same one.
    other = new_patient()
    theirs = await intake.post(body(other), key=key)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["assessment_id"] != first.json()["assessment_id"]


async def test_concurrent_retries_with_one_key_create_one_assessment(intake: Intake) -> None:
    patient = new_patient()
    key = f"key-{uuid.uuid4()}"
    responses = await asyncio.gather(*(intake.post(body(patient), key=key) for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["assessment_id"] for r in responses}) == 1
    assert await intake.stored(patient) == 1
    [record] = await intake.published(patient, expect=1)
    assert Envelope.from_bytes(record.value).sequence == 1


async def test_invalid_idempotency_key_is_422(intake: Intake) -> None:
    patient = new_patient()
    response = await intake.post(body(patient), key="has spaces")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert await intake.stored(patient) == 0


# --- repeat measures (issue 17) ------------------------------------------------------------


def repeat_body(patient: str, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "patient_id": patient,
        "state": "NY",
        "phq9": [0, 1, 0, 1, 0, 1, 0, 1, 0],  # 4: minimal
        "gad7": [1, 0, 1, 0, 1, 0, 0],  # 3: minimal
        "cssrs": NO_CSSRS_RISK,
    }
    payload.update(overrides)
    return payload


async def booked_visit(intake: Intake, patient: str) -> uuid.UUID:
    """Booking's AppointmentBooked on its topic; returns once intake learnt of the visit."""
    appointment = uuid.uuid4()
    starts = datetime.now(UTC) + timedelta(days=3)
    event = AppointmentBooked(
        patient_id=patient,
        appointment_id=appointment,
        clinician_id="psy-ny-1",
        clinician_role="psychiatrist",
        visit_type="psychiatric_follow_up",
        state="NY",
        starts_at=starts,
        ends_at=starts + timedelta(minutes=30),
    )
    await produce(intake.bootstrap, wrap(event, patient))

    async def known() -> bool:
        async with intake.context.pool.acquire() as conn:
            return await intake_store.has_visit(conn, patient, appointment)

    await eventually(known, timeout=30)
    return appointment


async def test_repeat_measures_are_scored_as_at_intake_and_trend_events_published(
    intake: Intake,
) -> None:
    patient = new_patient()
    refused = await intake.client.post("/v1/outcome-measures", json=repeat_body(patient))
    assert refused.status_code == 409 and refused.json()["code"] == "not_in_care", refused.text

    baseline = await intake.post(body(patient))  # PHQ-9 11 moderate, GAD-7 6 mild
    assert baseline.status_code == 201
    appointment = await booked_visit(intake, patient)

    improving = await intake.client.post(
        "/v1/outcome-measures", json=repeat_body(patient, appointment_id=str(appointment))
    )
    assert improving.status_code == 201, improving.text
    result = improving.json()
    assert (result["phq9_total"], result["phq9_band"], result["phq9_change"]) == (4, "minimal", -7)
    assert (result["gad7_total"], result["gad7_change"]) == (3, -3)
    assert result["phq9_response"] and result["phq9_remission"]
    assert result["baseline_assessment_id"] == baseline.json()["assessment_id"]
    assert result["appointment_id"] == str(appointment)
    assert result["safety"] is None
    assert "phq9" not in result and "gad7" not in result  # never the answers

    worse = await intake.client.post(
        "/v1/outcome-measures",
        json=repeat_body(patient, phq9=[2, 2, 2, 2, 1, 1, 1, 1, 1], gad7=[2, 2, 1, 1, 1, 1, 1]),
    )
    assert worse.status_code == 201, worse.text
    assert worse.json()["safety"]["crisis_message"] == CRISIS  # item 9 = 1: the 988 message

    records = await intake.published(patient, expect=5)
    assert [(e.sequence, e.type) for e in envelopes(records)] == [
        (1, "AssessmentCompleted"),
        (2, "OutcomeMeasured"),
        (3, "SafetyRiskFlagged"),  # before the trend events: the on-call alert comes first
        (4, "OutcomeMeasured"),
        (5, "SymptomsWorsened"),
    ]
    _, worsened = parse(envelopes(records)[4].to_bytes())
    assert isinstance(worsened, SymptomsWorsened)
    assert worsened.previous_assessment_id == uuid.UUID(result["assessment_id"])
    assert worsened.reasons == ["phq9_rise", "phq9_band_up", "gad7_rise", "gad7_band_up"]
    _, measured = parse(envelopes(records)[1].to_bytes())
    assert isinstance(measured, OutcomeMeasured) and measured.appointment_id == appointment
    stored = await intake.context.pool.fetchval(
        "SELECT phq9_answers FROM outcome_measures WHERE assessment_id = $1",
        uuid.UUID(result["assessment_id"]),
    )
    assert stored == [0, 1, 0, 1, 0, 1, 0, 1, 0]


async def test_repeat_measure_refusals(intake: Intake) -> None:
    patient = new_patient()
    assert (await intake.post(body(patient))).status_code == 201
    await booked_visit(intake, patient)
    other = new_patient()
    as_other = await intake.client.post(
        "/v1/outcome-measures", json=repeat_body(patient), headers=bearer("patient", other)
    )
    assert as_other.status_code == 403
    as_clinician = await intake.client.post(
        "/v1/outcome-measures", json=repeat_body(patient), headers=bearer("clinician", "psy-ny-1")
    )
    assert as_clinician.status_code == 403
    strange_visit = await intake.client.post(
        "/v1/outcome-measures", json=repeat_body(patient, appointment_id=str(uuid.uuid4()))
    )
    assert strange_visit.status_code == 422
    assert strange_visit.json()["code"] == "appointment_unknown"
    key = {"Idempotency-Key": "repeat-1"}
    first = await intake.client.post("/v1/outcome-measures", json=repeat_body(patient), headers=key)
    again = await intake.client.post("/v1/outcome-measures", json=repeat_body(patient), headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["assessment_id"] == again.json()["assessment_id"]
    changed = await intake.client.post(
        "/v1/outcome-measures", json=repeat_body(patient, state="CA"), headers=key
    )
    assert changed.status_code == 409
    count = await intake.context.pool.fetchval(
        "SELECT count(*) FROM outcome_measures WHERE patient_id = $1", patient
    )
    assert count == 1
