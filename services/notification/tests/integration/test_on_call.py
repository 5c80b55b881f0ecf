"""The on-call route for urgent safety alerts (ADR 0015): ops only, audited, required for
readiness; an alert that cannot be delivered is retried and escalated, never dropped silently.

Issue 13 found, on a fresh `python -m carebridge_devstack run --no-demo`, that an imminent-risk
assessment's alert to `on-call` ended `failed` / `no_contact` after one attempt and nothing else
happened. `test_an_alert_without_a_route_waits_escalates_and_goes_out_once_ops_set_it` is that
run, and what happens now.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from carebridge_contracts import SafetyRiskFlagged
from carebridge_devstack.testing import bearer

pytestmark = pytest.mark.integration

SECOND = timedelta(seconds=1)


def ops() -> dict[str, str]:
    """An ops token minted when used (a module-level one can expire in a long run)."""
    return bearer("ops", "ops-on-call-test")


def flagged(patient: str) -> SafetyRiskFlagged:
    return SafetyRiskFlagged(
        patient_id=patient,
        assessment_id=uuid.uuid4(),
        state="NY",
        reasons=["cssrs_q4"],
        imminent=True,
        flagged_at=datetime.now(UTC),
    )


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def log_lines(out: str) -> list[dict[str, Any]]:
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def route_body(primary: str, escalation: str) -> dict[str, Any]:
    return {"primary": {"email": primary}, "escalation": {"email": escalation}}


async def readiness(service: Any) -> dict[str, Any]:
    response = await service.client.get("/readyz")
    body: dict[str, Any] = response.json()
    return body


async def test_an_alert_without_a_route_waits_escalates_and_goes_out_once_ops_set_it(
    start_service: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    no_route = {"on_call_bootstrap_primary_email": "", "on_call_bootstrap_escalation_email": ""}
    async with start_service(dispatcher_enabled=False, wait_ready=False, **no_route) as service:

        async def only_the_route_missing() -> bool:
            body = await readiness(service)
            return body["status"] == "not_ready" and body["failing"] == ["on_call_route"]

        await service.eventually(only_the_route_missing, what="every check but on_call_route")
        assert "PUT /v1/on-call-route" in (await readiness(service))["problems"]["on_call_route"]

        on_call, escalation_id = (
            service.settings.on_call_clinician_id,
            service.settings.on_call_escalation_id,
        )
        patient = service.uid("p")
        flag = flagged(patient)
        escalations = counter("carebridge_safety_alert_escalations_total", error_code="no_contact")
        capsys.readouterr()
        await service.publish(flag)
        await service.wait_deliveries(1, patient_id=patient)
        await service.drain()

        rows = {r["recipient_id"]: r for r in await service.deliveries(patient_id=patient)}
        primary = rows[on_call]
        assert (primary["status"], primary["attempts"], primary["last_error_code"]) == (
            "pending", 1, "no_contact"
        ), "retried, not failed after one attempt"  # fmt: skip
        assert rows[escalation_id]["status"] == "pending", "escalated to the second recipient"
        assert rows[escalation_id]["template"] == primary["template"]
        assert (
            counter("carebridge_safety_alert_escalations_total", error_code="no_contact")
            == escalations + 1
        )
        logged = [
            line for line in log_lines(capsys.readouterr().out)
            if line.get("msg") == "safety_alert_escalated"
        ]  # fmt: skip
        assert [(line["level"], line["error_code"]) for line in logged] == [("error", "no_contact")]
        assert patient not in json.dumps(logged), "ids of the delivery, never of the patient"

        primary_mail = f"{service.uid('primary')}@example.test"
        escalation_mail = f"{service.uid('escalation')}@example.test"
        put = await service.client.put(
            "/v1/on-call-route", json=route_body(primary_mail, escalation_mail), headers=ops()
        )
        assert put.status_code == 200, put.text
        assert (await service.client.get("/readyz")).status_code == 200
        await service.advance(60 * SECOND)
        await service.drain()
        rows = {r["recipient_id"]: r for r in await service.deliveries(patient_id=patient)}
        assert rows[on_call]["status"] == rows[escalation_id]["status"] == "sent"
        assert len(service.mail_to(primary_mail, flag.assessment_id)) == 1
        assert len(service.mail_to(escalation_mail, flag.assessment_id)) == 1


async def test_an_alert_smtp_keeps_refusing_is_escalated_then_reported_as_undelivered(
    start_service: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with start_service(dispatcher_enabled=False, delivery_max_attempts=2) as service:
        service.sink.handler.fail_first = 1_000_000
        patient = service.uid("p")
        before = {
            "escalated": counter(
                "carebridge_safety_alert_escalations_total", error_code="smtp_451"
            ),
            "primary": counter(
                "carebridge_safety_alerts_undelivered_total",
                recipient="primary",
                error_code="smtp_451",
            ),
            "escalation": counter(
                "carebridge_safety_alerts_undelivered_total",
                recipient="escalation",
                error_code="smtp_451",
            ),
        }
        capsys.readouterr()
        await service.publish(flagged(patient))
        await service.wait_deliveries(1, patient_id=patient)
        for _ in range(4):
            await service.drain()
            await service.advance(60 * SECOND)
        rows = await service.deliveries(patient_id=patient)
        assert sorted((r["recipient_id"], r["status"], r["attempts"]) for r in rows) == sorted(
            [
                (service.settings.on_call_clinician_id, "failed", 2),
                (service.settings.on_call_escalation_id, "failed", 2),
            ]
        )
        assert (
            counter("carebridge_safety_alert_escalations_total", error_code="smtp_451")
            == before["escalated"] + 1
        )
        for recipient in ("primary", "escalation"):
            assert (
                counter(
                    "carebridge_safety_alerts_undelivered_total",
                    recipient=recipient,
                    error_code="smtp_451",
                )
                == before[recipient] + 1
            )
        errors = [
            (line["msg"], line.get("recipient"))
            for line in log_lines(capsys.readouterr().out)
            if line.get("level") == "error"
        ]
        assert sorted(errors) == [
            ("safety_alert_escalated", None),
            ("safety_alert_undelivered", "escalation"),
            ("safety_alert_undelivered", "primary"),
        ]


async def test_only_ops_set_the_route_and_every_change_is_audited(start_service: Any) -> None:
    async with start_service(dispatcher_enabled=False) as service:
        on_call = service.settings.on_call_clinician_id
        body = route_body("someone@example.test", "someone-else@example.test")
        for who in (
            bearer("coordinator", "coord-x"),
            bearer("clinician", on_call),  # even a token whose subject is the on-call id
            bearer("clinician", "psy-x"),
            bearer("patient", "p-x"),
        ):
            for method in ("PUT", "GET", "DELETE"):
                refused = await service.client.request(
                    method, "/v1/on-call-route", json=body if method == "PUT" else None, headers=who
                )
                assert (refused.status_code, refused.json()["code"]) == (403, "role_not_allowed")
            for recipient in (on_call, service.settings.on_call_escalation_id):
                contact = await service.client.put(
                    f"/v1/contacts/clinician/{recipient}", json={"email": "x@example.test"},
                    headers=who,
                )  # fmt: skip
                assert (contact.status_code, contact.json()["code"]) == (
                    403, "on_call_route_ops_only"
                )  # fmt: skip
        bootstrapped = (await service.client.get("/v1/on-call-route", headers=ops())).json()
        assert bootstrapped["set_by_sub"] == "notification-bootstrap"
        assert bootstrapped["primary"]["email"] == service.settings.on_call_bootstrap_primary_email

        changed = await service.client.put("/v1/on-call-route", json=body, headers=ops())
        assert changed.json()["primary"]["email"] == "someone@example.test"
        assert (await service.client.delete("/v1/on-call-route", headers=ops())).status_code == 204
        assert (await service.client.get("/readyz")).status_code == 503
        assert (await service.client.get("/v1/on-call-route", headers=ops())).status_code == 404
        async with service.ctx.pool.acquire() as conn:
            trail = await conn.fetch(
                "SELECT actor_sub, actor_role, action FROM audit_log"
                " WHERE resource_type = 'on_call_route' ORDER BY id"
            )
        assert [tuple(row) for row in trail] == [
            ("notification-bootstrap", "ops", "create"),
            ("ops-on-call-test", "ops", "read"),
            ("ops-on-call-test", "ops", "update"),
            ("ops-on-call-test", "ops", "delete"),
        ]
