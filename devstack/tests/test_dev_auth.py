"""DevAuth: which principal a dev client's request is signed as (no services needed)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from carebridge_devstack.dev_auth import (
    COORDINATOR,
    OPS,
    UNKNOWN_CLINICIAN,
    UNKNOWN_PATIENT,
    Actor,
    DevAuth,
    Owner,
    infer_actor,
)
from carebridge_devstack.signer import dev_signer
from carebridge_shared.auth import TokenVerifier, load_public_keys

OWNERS = {
    "a-1": Owner("p-1", "psy-1"),
    "r-1": Owner("p-1", None),
    "s-1": Owner("p-1", None),
}


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "actor"),
    [
        ("POST", "/v1/_dev/clock", {}, {}, OPS),
        ("GET", "/v1/deliveries", {"patient_id": "p-1"}, {}, OPS),
        ("GET", "/v1/audit-events", {"patient_id": "p-1"}, {}, OPS),
        ("PUT", "/v1/contacts/patient/p-1", {}, {}, ("patient", "p-1")),
        ("PUT", "/v1/contacts/clinician/psy-1", {}, {}, ("clinician", "psy-1")),
        ("PUT", "/v1/clinicians/psy-9", {}, {}, COORDINATOR),
        ("PUT", "/v1/therapists/thr-9", {}, {}, COORDINATOR),
        ("GET", "/v1/patients/p-1/eligibility", {}, {}, ("patient", "p-1")),
        ("GET", "/v1/care-plans/p-1", {}, {}, ("patient", "p-1")),
        ("POST", "/v1/assessments", {}, {"patient_id": "p-2"}, ("patient", "p-2")),
        ("POST", "/v1/assessments", {}, {}, ("patient", UNKNOWN_PATIENT)),
        ("GET", "/v1/assessments/s-1", {}, {}, ("patient", "p-1")),
        ("POST", "/v1/appointments", {}, {"patient_id": "p-3"}, ("patient", "p-3")),
        ("GET", "/v1/appointments", {"patient_id": "p-3"}, {}, ("patient", "p-3")),
        ("GET", "/v1/appointments", {"clinician_id": "psy-1"}, {}, ("clinician", "psy-1")),
        ("GET", "/v1/appointments/a-1", {}, {}, ("patient", "p-1")),
        ("POST", "/v1/appointments/a-1/complete", {}, {}, ("clinician", "psy-1")),
        ("POST", "/v1/appointments/a-1/no-show", {}, {}, ("clinician", "psy-1")),
        ("POST", "/v1/appointments/a-1/cancel", {}, {"cancelled_by": "patient"}, ("patient", "p-1")),
        ("POST", "/v1/appointments/a-1/cancel", {}, {"cancelled_by": "clinician"},
         ("clinician", "psy-1")),
        ("POST", "/v1/appointments/unknown/complete", {}, {}, ("clinician", UNKNOWN_CLINICIAN)),
        ("GET", "/v1/appointments/unknown", {}, {}, ("patient", UNKNOWN_PATIENT)),
        ("POST", "/v1/referrals", {}, {"patient_id": "p-1", "requesting_clinician_id": "psy-2"},
         ("clinician", "psy-2")),
        ("GET", "/v1/referrals", {"patient_id": "p-1"}, {}, ("patient", "p-1")),
        ("GET", "/v1/referrals", {"therapist_id": "thr-1"}, {}, ("clinician", "thr-1")),
        ("GET", "/v1/referrals", {"status": "on-hold"}, {}, COORDINATOR),
        ("GET", "/v1/referrals/r-1", {}, {}, ("patient", "p-1")),
        ("POST", "/v1/referrals/r-1/revoke", {}, {}, ("patient", "p-1")),
        ("POST", "/v1/referrals/r-1/complete", {}, {}, COORDINATOR),
        ("GET", "/v1/slots", {"state": "NY"}, {}, COORDINATOR),
        ("GET", "/v1/slots", {"patient_id": "p-1"}, {}, ("patient", "p-1")),
    ],
)  # fmt: skip
def test_who_a_request_acts_for(
    method: str, path: str, params: dict[str, str], body: dict[str, Any], actor: Actor
) -> None:
    assert infer_actor(method, path, params, body, OWNERS) == actor


def test_requests_are_signed_and_records_remembered() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/appointments":
            body = json.loads(request.content)
            return httpx.Response(
                201, json={"id": "a-9", "patient_id": body["patient_id"], "clinician_id": "psy-7"}
            )
        return httpx.Response(200, json={})

    auth = DevAuth()
    verifier = TokenVerifier(
        load_public_keys(dev_signer().public_pem, ["ES256"]),
        issuer="carebridge-dev",
        audience="carebridge",
    )
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        client.post("http://booking/v1/appointments", json={"patient_id": "p-9"})
        client.post("http://booking/v1/appointments/a-9/complete")
        client.get("http://referral/v1/care-plans/p-9", headers={"X-Clinician-Id": "thr-1"})
        client.get("http://booking/v1/slots", headers={"Authorization": "Bearer mine"})
        client.get("http://intake/v1/patients/Jane Doe/eligibility")

    def principal(request: httpx.Request) -> tuple[str, str]:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        found = verifier.verify(token)
        return found.role, found.sub

    assert principal(seen[0]) == ("patient", "p-9")
    assert principal(seen[1]) == ("clinician", "psy-7"), "learnt from the booking's answer"
    assert principal(seen[2]) == ("clinician", "thr-1"), "the header that stood in for a token"
    assert seen[3].headers["Authorization"] == "Bearer mine", "an explicit token is kept"
    assert principal(seen[4]) == ("patient", UNKNOWN_PATIENT), "a malformed id is not a sub"
