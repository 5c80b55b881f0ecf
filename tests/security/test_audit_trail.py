"""The audit trail (ADR 0014), against intake in-process on the real Kafka and PostgreSQL: the
server makes the correlation id that the audit log, the logs, the events and the response carry;
a caller's own `X-Correlation-ID` is kept beside it only when it cannot carry PHI; a read of the
trail is itself recorded. (The role's grants: tests/security/test_database_roles.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from carebridge_contracts import Envelope, Topic
from carebridge_devstack.testing import assessment_request, bearer, read_topic
from carebridge_intake.app import IntakeSettings, build

pytestmark = pytest.mark.integration

HEADER = "X-Correlation-ID"


@dataclass
class Intake:
    client: httpx.AsyncClient
    pool: asyncpg.Pool
    bootstrap: str

    async def assess(self, patient: str, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.post(
            "/v1/assessments",
            json=assessment_request(patient),
            headers={**bearer("patient", patient), **headers},
        )
        assert response.status_code == 201, response.text
        return response

    async def rows(self, patient: str) -> list[asyncpg.Record]:
        return list(
            await self.pool.fetch(
                "SELECT actor_sub, actor_role, action, resource_type, resource_id,"
                " correlation_id, client_correlation_id FROM audit_log"
                " WHERE patient_id = $1 ORDER BY id",
                patient,
            )
        )


@pytest.fixture
async def intake(
    service_database_url: Callable[[str], str], stack_endpoints: Any
) -> AsyncIterator[Intake]:
    settings = IntakeSettings(
        database_url=service_database_url("intake"),
        kafka_bootstrap_servers=stack_endpoints.kafka_bootstrap,
        relay_poll_interval_ms=100,
        consumer_group=f"intake-audit-{uuid.uuid4().hex[:8]}",
        consumer_offset_reset="latest",
    )
    app = build(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://intake"
        ) as client,
    ):
        yield Intake(client, app.state.context.pool, stack_endpoints.kafka_bootstrap)


def log_lines(out: str, msg: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("msg") == msg]


async def test_the_server_makes_the_correlation_id_and_keeps_the_callers_beside_it(
    intake: Intake, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = f"pat-{uuid.uuid4()}"
    caller_id = str(uuid.uuid4())
    response = await intake.assess(patient, {HEADER: caller_id})

    server_id = uuid.UUID(response.headers[HEADER])
    assert str(server_id) != caller_id, "the response carries the server's id"
    [row] = await intake.rows(patient)
    assert (row["actor_sub"], row["action"], row["resource_type"]) == (
        patient,
        "create",
        "assessment",
    )
    assert (row["correlation_id"], row["client_correlation_id"]) == (server_id, caller_id)
    [record] = await read_topic(
        intake.bootstrap,
        str(Topic.ASSESSMENTS),
        where=lambda r: r.key == patient.encode(),
        expect=1,
    )
    assert Envelope.from_bytes(record.value).correlation_id == server_id, "events too"
    [logged] = [
        line for line in log_lines(capsys.readouterr().out, "http_request")
        if line.get("correlation_id") == str(server_id)
    ]  # fmt: skip
    assert logged["client_correlation_id"] == caller_id


@pytest.mark.parametrize(
    "sent",
    [
        "ann.smith@example.org",
        "Ann Smith",
        "ann-smith-1970-01-01",
        "0123456789abcde",  # hex, but shorter than 16
        "f" * 65,  # hex, but longer than 64
        "12345678-1234-1234-1234-1234567890123",  # not a UUID
        "<script>",
    ],
)
async def test_a_callers_id_that_could_carry_phi_is_dropped(
    intake: Intake, capsys: pytest.CaptureFixture[str], sent: str
) -> None:
    patient = f"pat-{uuid.uuid4()}"
    response = await intake.assess(patient, {HEADER: sent})
    server_id = uuid.UUID(response.headers[HEADER])
    [row] = await intake.rows(patient)
    assert (row["correlation_id"], row["client_correlation_id"]) == (server_id, None)
    out = capsys.readouterr().out
    assert sent not in out
    assert all("client_correlation_id" not in line for line in log_lines(out, "http_request"))


async def test_a_trace_id_in_hex_is_kept(intake: Intake) -> None:
    patient, trace_id = f"pat-{uuid.uuid4()}", uuid.uuid4().hex
    await intake.assess(patient, {HEADER: trace_id})
    [row] = await intake.rows(patient)
    assert row["client_correlation_id"] == trace_id


async def test_the_database_refuses_a_client_id_that_is_not_an_id(intake: Intake) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await intake.pool.execute(
            "INSERT INTO audit_log (actor_sub, actor_role, action, resource_type, resource_id,"
            " correlation_id, client_correlation_id) VALUES ('c-1', 'coordinator', 'read',"
            " 'assessment', 'a-1', gen_random_uuid(), 'ann.smith@example.org')"
        )


async def test_reading_the_audit_trail_is_itself_audited(intake: Intake) -> None:
    patient, coordinator, ops = f"pat-{uuid.uuid4()}", f"co-{uuid.uuid4().hex[:8]}", "ops-audit"
    await intake.assess(patient, {})

    first = await intake.client.get(
        "/v1/audit-events",
        params={"patient_id": patient},
        headers=bearer("coordinator", coordinator),
    )
    assert first.status_code == 200, first.text
    assert [e["resource_type"] for e in first.json()["events"]] == ["assessment"]

    for role, sub in (("patient", patient), ("clinician", "psy-stranger")):
        refused = await intake.client.get(
            "/v1/audit-events", params={"patient_id": patient}, headers=bearer(role, sub)
        )
        assert refused.status_code == 403, "a refusal reads nothing, so it records nothing"

    second = await intake.client.get(
        "/v1/audit-events", params={"patient_id": patient}, headers=bearer("ops", ops)
    )
    events = second.json()["events"]
    read = [e for e in events if e["resource_type"] == "audit_trail"]
    assert [(e["actor_role"], e["actor_sub"], e["action"], e["resource_id"]) for e in read] == [
        ("coordinator", coordinator, "read", patient)
    ], "the coordinator's read is there; the refused ones are not; ops' own read comes after it"
    assert read[0]["correlation_id"] == first.headers[HEADER]
    rows = await intake.rows(patient)
    assert [(r["actor_sub"], r["resource_type"]) for r in rows][-1] == (ops, "audit_trail")
