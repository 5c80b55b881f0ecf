"""The authorization matrix (docs/security.md): every endpoint of every service, called by every
kind of caller, against the four services running on the real Kafka and PostgreSQL.

Columns are callers relative to the record a call reaches for: the patient it belongs to,
another patient, a clinician who treats the patient, one who does not, a coordinator, ops.
A cell is either allowed (the call succeeds with the case's status) or denied (403). A route
of any app without a case here fails `test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from carebridge_contracts.services import SERVICES
from carebridge_devstack.signer import DevSigner
from carebridge_devstack.testing import bearer

if TYPE_CHECKING:
    from conftest import Principal, World
    from fastapi import FastAPI

pytestmark = pytest.mark.integration

PATIENT, OTHER_PATIENT = "patient", "other patient"
CLINICIAN, OTHER_CLINICIAN = "clinician", "other clinician"
COORDINATOR, OPS = "coordinator", "ops"
COLUMNS = (PATIENT, OTHER_PATIENT, CLINICIAN, OTHER_CLINICIAN, COORDINATOR, OPS)
OPEN_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


@dataclass(frozen=True)
class Call:
    who: Principal
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Whose record a call reaches for; the columns' callers follow from it."""

    patient: str
    clinician: str


Build = Callable[["World", str], Awaitable[Call]]


@dataclass(frozen=True)
class Case:
    service: str
    method: str
    route: str
    allowed: frozenset[str]
    build: Build
    ok: int = 200
    label: str = ""
    restore: Callable[[World], Awaitable[None]] | None = None  # undo an allowed call

    @property
    def id(self) -> str:
        suffix = f" [{self.label}]" if self.label else ""
        return f"{self.service} {self.method} {self.route}{suffix}"


def caller(w: World, column: str, target: Target | None = None) -> Principal:
    """The principal of a column, for a record of `target` (default: patient A and `psy`)."""
    target = target or Target(w.patient, w.psychiatrist)
    return {
        PATIENT: ("patient", target.patient),
        OTHER_PATIENT: ("patient", w.other_patient),
        CLINICIAN: ("clinician", target.clinician),
        OTHER_CLINICIAN: ("clinician", w.stranger),
        COORDINATOR: ("coordinator", w.coordinator),
        OPS: ("ops", w.ops),
    }[column]


def about_a(path: Callable[[World], str], **kw: Any) -> Build:
    """A call about patient A's records, as the column's caller."""

    async def build(w: World, column: str) -> Call:
        extras = {k: v(w) if callable(v) else v for k, v in kw.items()}
        return Call(caller(w, column), path(w), **extras)

    return build


def allow(*columns: str) -> frozenset[str]:
    return frozenset(columns)


# --- builders that make a fresh record per cell (the allowed call changes it) --------------


async def fresh_visit(w: World, column: str, action: str) -> Call:
    visit = await w.book(w.patient, w.psychiatrist)
    path = f"/v1/appointments/{visit['id']}/{action}"
    who = caller(w, column)
    if action == "reschedule":
        body: Any = {"starts_at": await w.free_slot(w.psychiatrist, "psychiatric_follow_up"),
                     "state": "WY"}  # fmt: skip
    elif action == "cancel":
        by = "clinician" if who[0] == "clinician" else "patient"
        body = {"cancelled_by": by, "reason_code": "patient_request"}
    else:
        body = None
    return Call(who, path, json=body)


def visit_action(action: str) -> Build:
    async def build(w: World, column: str) -> Call:
        return await fresh_visit(w, column, action)

    return build


async def book_for_a(w: World, column: str) -> Call:
    who = caller(w, column)
    clinician = who[1] if who[0] == "clinician" else w.psychiatrist
    body = {
        "patient_id": w.patient,
        "clinician_id": clinician,
        "visit_type": "psychiatric_follow_up",
        "starts_at": await w.free_slot(w.psychiatrist, "psychiatric_follow_up"),
        "state": "WY",
    }
    return Call(who, "/v1/appointments", json=body)


async def open_referral(w: World, column: str) -> Call:
    """A referral of a patient nobody referred yet, who has a visit booked with `psy`: in the
    caller's own name if a clinician, for `psy` if a coordinator."""
    patient = await w.patient_of(w.psychiatrist)
    who = caller(w, column, Target(patient, w.psychiatrist))
    requester = who[1] if who[0] == "clinician" else w.psychiatrist
    body = {"patient_id": patient, "state": "WY", "modality": "CBT", "urgency": "routine",
            "requesting_clinician_id": requester}  # fmt: skip
    return Call(who, "/v1/referrals", json=body)


def close_referral(action: str) -> Build:
    async def build(w: World, column: str) -> Call:
        patient = await w.patient_of(w.psychiatrist)
        if action == "complete":
            await w.consent(patient)  # matched at once: only a matched referral completes
        referral = await w.refer(patient, w.psychiatrist)
        who = caller(w, column, Target(patient, w.psychiatrist))
        return Call(who, f"/v1/referrals/{referral['id']}/{action}")

    return build


async def revoke_a_consent(w: World, column: str) -> Call:
    patient = w.new_id("px")
    await w.consent(patient)
    who = caller(w, column, Target(patient, w.psychiatrist))
    return Call(who, f"/v1/patients/{patient}/consents/care_plan_sharing")


async def write_the_plan(w: World, column: str) -> Call:
    version = await w.plan_version(w.patient)
    return Call(
        caller(w, column),
        f"/v1/care-plans/{w.patient}",
        json={"goals": [f"goal set by a {column}"]},
        headers={"If-Match": f'"{version}"'},
    )


def contact_of(kind: str) -> Build:
    async def build(w: World, column: str) -> Call:
        target = Target(w.patient, w.psychiatrist)
        return Call(caller(w, column, target), contact_path(kind, target))

    return build


def put_contact(kind: str) -> Build:
    async def build(w: World, column: str) -> Call:
        target = Target(w.patient, w.psychiatrist)
        return Call(caller(w, column, target), contact_path(kind, target),
                    json={"email": f"{column.replace(' ', '-')}@example.org"})  # fmt: skip

    return build


def delete_contact(kind: str) -> Build:
    async def build(w: World, column: str) -> Call:
        target = Target(w.new_id("px"), w.new_id("psy-x"))
        owner = (
            ("patient", target.patient) if kind == "patient" else ("clinician", target.clinician)
        )
        await w.ok("notification", "PUT", contact_path(kind, target), owner,
                   json={"email": "someone@example.org"})  # fmt: skip
        return Call(caller(w, column, target), contact_path(kind, target))

    return build


def contact_path(kind: str, target: Target) -> str:
    recipient = target.patient if kind == "patient" else target.clinician
    return f"/v1/contacts/{kind}/{recipient}"


def a_params(**extra: str) -> Callable[[World], dict[str, str]]:
    return lambda w: {"patient_id": w.patient, **extra}


SLOT_QUERY = {"state": "WY", "visit_type": "psychiatric_follow_up"}
ALL_PEOPLE = allow(PATIENT, OTHER_PATIENT, CLINICIAN, OTHER_CLINICIAN, COORDINATOR)
CLINICAL_STAFF = allow(CLINICIAN, OTHER_CLINICIAN, COORDINATOR)
OWN_AND_TREATING = allow(PATIENT, CLINICIAN)

CASES: tuple[Case, ...] = (
    # --- intake ---------------------------------------------------------------------------
    Case("intake", "POST", "/v1/assessments", allow(PATIENT), ok=201,
         build=about_a(lambda w: "/v1/assessments",
                       json=lambda w: w.assessment_body(w.patient))),
    Case("intake", "GET", "/v1/assessments/{assessment_id}", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/assessments/{w.ids['assessment']}")),
    # Patient A has a visit booked: in care, so the repeat measure is taken (201).
    Case("intake", "POST", "/v1/outcome-measures", allow(PATIENT), ok=201,
         build=about_a(lambda w: "/v1/outcome-measures",
                       json=lambda w: w.repeat_measure_body(w.patient))),
    Case("intake", "GET", "/v1/audit-events", allow(COORDINATOR, OPS),
         build=about_a(lambda w: "/v1/audit-events", params=a_params())),
    # --- booking --------------------------------------------------------------------------
    Case("booking", "GET", "/v1/clinicians", ALL_PEOPLE,
         build=about_a(lambda w: "/v1/clinicians")),
    Case("booking", "GET", "/v1/clinicians/{clinician_id}", ALL_PEOPLE,
         build=about_a(lambda w: f"/v1/clinicians/{w.psychiatrist}")),
    Case("booking", "PUT", "/v1/clinicians/{clinician_id}", allow(COORDINATOR), ok=201,
         build=about_a(lambda w: f"/v1/clinicians/{w.new_id('psy-new')}",
                       json={"role": "psychiatrist", "time_zone": "UTC"})),
    Case("booking", "PATCH", "/v1/clinicians/{clinician_id}", allow(COORDINATOR),
         build=about_a(lambda w: f"/v1/clinicians/{w.stranger}", json={"active": True})),
    Case("booking", "GET", "/v1/slots", allow(PATIENT, CLINICIAN, COORDINATOR),
         build=about_a(lambda w: "/v1/slots", params=a_params(**SLOT_QUERY))),
    Case("booking", "POST", "/v1/appointments", OWN_AND_TREATING, ok=201, build=book_for_a),
    Case("booking", "GET", "/v1/appointments", OWN_AND_TREATING, label="a patient's visits",
         build=about_a(lambda w: "/v1/appointments", params=a_params())),
    Case("booking", "GET", "/v1/appointments", allow(CLINICIAN), label="a clinician's schedule",
         build=about_a(lambda w: "/v1/appointments",
                       params=lambda w: {"clinician_id": w.psychiatrist})),
    Case("booking", "GET", "/v1/appointments/{appointment_id}", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/appointments/{w.ids['appointment']}")),
    Case("booking", "POST", "/v1/appointments/{appointment_id}/reschedule", OWN_AND_TREATING,
         build=visit_action("reschedule")),
    Case("booking", "POST", "/v1/appointments/{appointment_id}/cancel", OWN_AND_TREATING,
         build=visit_action("cancel")),
    Case("booking", "POST", "/v1/appointments/{appointment_id}/complete", allow(CLINICIAN),
         build=visit_action("complete")),
    Case("booking", "POST", "/v1/appointments/{appointment_id}/no-show", allow(CLINICIAN),
         build=visit_action("no-show")),
    Case("booking", "GET", "/v1/patients/{patient_id}/eligibility", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/patients/{w.patient}/eligibility")),
    Case("booking", "GET", "/v1/audit-events", allow(COORDINATOR, OPS),
         build=about_a(lambda w: "/v1/audit-events", params=a_params())),
    # --- referral -------------------------------------------------------------------------
    Case("referral", "GET", "/v1/therapists", CLINICAL_STAFF,
         build=about_a(lambda w: "/v1/therapists")),
    Case("referral", "GET", "/v1/therapists/{therapist_id}", CLINICAL_STAFF,
         build=about_a(lambda w: f"/v1/therapists/{w.therapist}")),
    Case("referral", "PUT", "/v1/therapists/{therapist_id}", allow(COORDINATOR), ok=201,
         build=about_a(lambda w: f"/v1/therapists/{w.new_id('thr-new')}",
                       json={"licence_states": ["WY"], "modalities": ["CBT"], "capacity": 0})),
    Case("referral", "POST", "/v1/referrals", allow(CLINICIAN, COORDINATOR), ok=201,
         label="by or for the patient's psychiatrist", build=open_referral),
    Case("referral", "GET", "/v1/referrals", allow(PATIENT, CLINICIAN, COORDINATOR),
         label="a patient's referrals", build=about_a(lambda w: "/v1/referrals", params=a_params())),
    Case("referral", "GET", "/v1/referrals", allow(COORDINATOR), label="the whole waitlist",
         build=about_a(lambda w: "/v1/referrals", params={"status": "on-hold"})),
    Case("referral", "GET", "/v1/referrals/{referral_id}", allow(PATIENT, CLINICIAN, COORDINATOR),
         build=about_a(lambda w: f"/v1/referrals/{w.ids['referral']}")),
    Case("referral", "POST", "/v1/referrals/{referral_id}/revoke",
         allow(PATIENT, CLINICIAN, COORDINATOR), build=close_referral("revoke")),
    Case("referral", "POST", "/v1/referrals/{referral_id}/complete", allow(CLINICIAN, COORDINATOR),
         build=close_referral("complete")),
    Case("referral", "GET", "/v1/patients/{patient_id}/care-team",
         allow(PATIENT, CLINICIAN, COORDINATOR),
         build=about_a(lambda w: f"/v1/patients/{w.patient}/care-team")),
    Case("referral", "POST", "/v1/patients/{patient_id}/consents", allow(PATIENT),
         label="already granted: 200",
         build=about_a(lambda w: f"/v1/patients/{w.patient}/consents",
                       json={"scope": "care_plan_sharing"})),
    Case("referral", "GET", "/v1/patients/{patient_id}/consents", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/patients/{w.patient}/consents")),
    Case("referral", "GET", "/v1/patients/{patient_id}/consents/{scope}", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/patients/{w.patient}/consents/care_plan_sharing")),
    Case("referral", "DELETE", "/v1/patients/{patient_id}/consents/{scope}", allow(PATIENT),
         build=revoke_a_consent),
    Case("referral", "GET", "/v1/care-plans/{patient_id}", OWN_AND_TREATING,
         build=about_a(lambda w: f"/v1/care-plans/{w.patient}")),
    Case("referral", "PUT", "/v1/care-plans/{patient_id}", allow(CLINICIAN), build=write_the_plan),
    Case("referral", "GET", "/v1/audit-events", allow(COORDINATOR, OPS),
         build=about_a(lambda w: "/v1/audit-events", params=a_params())),
    # --- notification ---------------------------------------------------------------------
    Case("notification", "PUT", "/v1/contacts/{recipient_kind}/{recipient_id}", allow(PATIENT),
         label="a patient's", build=put_contact("patient")),
    Case("notification", "PUT", "/v1/contacts/{recipient_kind}/{recipient_id}",
         allow(CLINICIAN, COORDINATOR), label="a clinician's", build=put_contact("clinician")),
    Case("notification", "GET", "/v1/contacts/{recipient_kind}/{recipient_id}", allow(PATIENT),
         label="a patient's", build=contact_of("patient")),
    Case("notification", "GET", "/v1/contacts/{recipient_kind}/{recipient_id}",
         allow(CLINICIAN, COORDINATOR), label="a clinician's", build=contact_of("clinician")),
    Case("notification", "DELETE", "/v1/contacts/{recipient_kind}/{recipient_id}",
         allow(PATIENT), ok=204, label="a patient's", build=delete_contact("patient")),
    Case("notification", "DELETE", "/v1/contacts/{recipient_kind}/{recipient_id}",
         allow(CLINICIAN, COORDINATOR), ok=204, label="a clinician's",
         build=delete_contact("clinician")),
    Case("notification", "PUT", "/v1/on-call-route", allow(OPS),
         build=about_a(lambda w: "/v1/on-call-route", json={
             "primary": {"email": "on-call@clinicians.example"},
             "escalation": {"email": "on-call@clinicians.example"}})),
    Case("notification", "GET", "/v1/on-call-route", allow(OPS),
         build=about_a(lambda w: "/v1/on-call-route")),
    Case("notification", "DELETE", "/v1/on-call-route", allow(OPS), ok=204,
         build=about_a(lambda w: "/v1/on-call-route"), restore=lambda w: w.set_on_call_route()),
    Case("notification", "GET", "/v1/deliveries", allow(OPS),
         build=about_a(lambda w: "/v1/deliveries", params=a_params())),
    Case("notification", "GET", "/v1/_dev/clock", allow(OPS),
         build=about_a(lambda w: "/v1/_dev/clock")),
    Case("notification", "POST", "/v1/_dev/clock", allow(OPS),
         build=about_a(lambda w: "/v1/_dev/clock", json={"advance_seconds": 0})),
)  # fmt: skip


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_authorization_matrix(world: World, case: Case, column: str) -> None:
    call = await case.build(world, column)
    response = await world.call(
        case.service, case.method, call.path, call.who,
        json=call.json, params=call.params, headers=call.headers,
    )  # fmt: skip
    if column in case.allowed:
        if case.restore is not None:
            await case.restore(world)
        assert response.status_code == case.ok, (
            f"{call.who} should be allowed: {response.status_code} {response.text[:300]}"
        )
    else:
        assert response.status_code == 403, (
            f"{call.who} should be refused: {response.status_code} {response.text[:300]}"
        )
        assert response.json()["code"] in {
            "role_not_allowed", "not_own_record", "not_treating", "not_self", "clinician_only",
            "not_appointment_clinician", "patient_required", "not_in_care_team",
            "on_call_route_ops_only",
        }  # fmt: skip


def test_every_route_is_in_the_matrix(unstarted_apps: dict[str, FastAPI]) -> None:
    """A new endpoint without a row here fails; so does a row for an endpoint that is gone.
    Every one of them declares the bearer scheme: the token check sits on every router."""
    routes: set[tuple[str, str, str]] = set()
    for service, app in unstarted_apps.items():
        for path, operations in app.openapi()["paths"].items():
            for method, operation in operations.items():
                if (method.upper(), path) in OPEN_ROUTES:
                    assert "security" not in operation, f"{path} needs no token"
                    continue
                assert operation.get("security") == [{"bearer": []}], f"{service} {path}"
                routes.add((service, method.upper(), path))
    in_matrix = {(c.service, c.method, c.route) for c in CASES}
    assert sorted(routes - in_matrix) == [], "endpoints without authorization cases"
    assert sorted(in_matrix - routes) == [], "cases for endpoints that do not exist"


@pytest.mark.parametrize("service", SERVICES)
async def test_probes_need_no_token(world: World, service: str) -> None:
    client = world.clients[service]
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


PROTECTED = {
    "intake": lambda w: f"/v1/assessments/{w.ids['assessment']}",
    "booking": lambda w: f"/v1/patients/{w.patient}/eligibility",
    "referral": lambda w: f"/v1/care-plans/{w.patient}",
    "notification": lambda w: f"/v1/contacts/patient/{w.patient}",
}


def bad_token(kind: str, patient: str, tmp_path: Path) -> dict[str, str]:
    now = int(time.time())
    if kind == "missing":
        return {}
    if kind == "expired":
        return bearer("patient", patient, iat=now - 7200, exp=now - 3600)
    if kind == "wrong audience":
        return bearer("patient", patient, aud="another-api")
    if kind == "wrong issuer":
        return bearer("patient", patient, iss="https://idp.elsewhere")
    if kind == "forged":
        return {"Authorization": f"Bearer {DevSigner.load(tmp_path / 'k.pem').token('ops', 'x')}"}
    if kind == "unsigned":
        claims = {"sub": patient, "role": "patient", "iss": "carebridge-dev",
                  "aud": "carebridge", "iat": now, "exp": now + 60}  # fmt: skip
        token = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind", ["missing", "expired", "wrong audience", "wrong issuer", "forged", "unsigned"]
)
@pytest.mark.parametrize("service", list(PROTECTED))
async def test_bad_tokens_are_401(world: World, service: str, kind: str, tmp_path: Path) -> None:
    headers = bad_token(kind, world.patient, tmp_path)
    response = await world.clients[service].get(PROTECTED[service](world), headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="carebridge"')
    assert world.patient not in response.text
    # the same request with a good token is the patient's own record
    good = await world.call(service, "GET", PROTECTED[service](world), ("patient", world.patient))
    assert good.status_code == 200, good.text


# --- a clinician reaches a patient only once they treat them ------------------------------


async def status_of(w: World, service: str, path: str, who: Principal) -> int:
    return (await w.call(service, "GET", path, who)).status_code


async def test_a_clinician_reaches_a_patient_once_booked_or_referred(world: World) -> None:
    w = world
    patient, psychiatrist = w.new_id("pc"), w.new_id("psy3")
    await w.put_clinician(psychiatrist)
    assessment_id = await w.assessed(patient)
    paths = {
        "intake": f"/v1/assessments/{assessment_id}",
        "booking": f"/v1/appointments?patient_id={patient}",
        "booking-eligibility": f"/v1/patients/{patient}/eligibility",
        "referral": f"/v1/patients/{patient}/consents",
    }
    psy: Principal = ("clinician", psychiatrist)
    for key, path in paths.items():
        assert await status_of(w, key.split("-")[0], path, psy) == 403, key

    await w.book(patient, psychiatrist, "initial_psychiatric_evaluation")
    # booking knows at once; intake and referral learn it from AppointmentBooked
    assert await status_of(w, "booking", paths["booking"], psy) == 200
    assert await status_of(w, "booking", paths["booking-eligibility"], psy) == 200
    await w.until_allowed("intake", paths["intake"], psy)
    await w.until_allowed("referral", paths["referral"], psy)
    # ... but still not another patient's records
    assert await status_of(w, "booking", f"/v1/patients/{w.patient}/eligibility", psy) == 403
    assert await status_of(w, "referral", f"/v1/care-plans/{w.patient}", psy) == 403

    # a therapist reaches the patient once referral matched them, and the plan with consent
    therapist: Principal = ("clinician", w.therapist)
    plan = f"/v1/care-plans/{patient}"
    assert await status_of(w, "referral", plan, therapist) == 403
    await w.refer(patient, psychiatrist)
    await w.consent(patient)
    assert await status_of(w, "referral", plan, therapist) == 200
    assert await status_of(w, "referral", f"/v1/patients/{patient}/care-team", therapist) == 200
    await w.until_allowed("intake", paths["intake"], therapist)
    await w.until_allowed("booking", paths["booking-eligibility"], therapist)


async def test_a_clinician_acts_only_in_their_own_name(world: World) -> None:
    w = world
    referral = {"patient_id": w.new_id("px"), "state": "WY", "modality": "CBT",
                "urgency": "routine", "requesting_clinician_id": w.psychiatrist}  # fmt: skip
    as_stranger = await w.call("referral", "POST", "/v1/referrals", ("clinician", w.stranger),
                               json=referral)  # fmt: skip
    assert (as_stranger.status_code, as_stranger.json()["code"]) == (403, "not_self")
    by_therapist = {**referral, "requesting_clinician_id": w.therapist}
    therapist = await w.call("referral", "POST", "/v1/referrals", ("clinician", w.therapist),
                             json=by_therapist)  # fmt: skip
    assert (therapist.status_code, therapist.json()["code"]) == (403, "psychiatrist_required")
    visit = await w.book(w.patient, w.psychiatrist)
    claimed = await w.call("booking", "POST", f"/v1/appointments/{visit['id']}/cancel",
                           ("patient", w.patient),
                           json={"cancelled_by": "clinician", "reason_code": "patient_request"})  # fmt: skip
    assert (claimed.status_code, claimed.json()["code"]) == (403, "cancelled_by_not_caller")


# --- the audit trail ----------------------------------------------------------------------


async def test_the_audit_trail_names_who_read_and_changed_what(world: World) -> None:
    w = world
    patient = w.new_id("pd")
    await w.assessed(patient)
    visit = await w.book(patient, w.psychiatrist, "initial_psychiatric_evaluation")
    psy: Principal = ("clinician", w.psychiatrist)
    await w.ok("booking", "GET", f"/v1/appointments/{visit['id']}", psy)
    await w.ok("booking", "POST", f"/v1/appointments/{visit['id']}/complete", psy)
    refused = await w.call("booking", "GET", f"/v1/appointments/{visit['id']}",
                           ("clinician", w.stranger))  # fmt: skip
    assert refused.status_code == 403
    await w.refer(patient, w.psychiatrist)
    await w.ok("referral", "PUT", f"/v1/care-plans/{patient}", psy,
               json={"goals": ["g"]}, headers={"If-Match": '"0"'})  # fmt: skip
    await w.ok("referral", "GET", f"/v1/care-plans/{patient}", ("patient", patient))
    stale = await w.call("referral", "PUT", f"/v1/care-plans/{patient}", psy,
                         json={"goals": ["h"]}, headers={"If-Match": '"0"'})  # fmt: skip
    assert stale.status_code == 409

    async def trail(service: str, *kinds: str) -> list[tuple[str, str, str, str, str]]:
        found = await w.ok(service, "GET", "/v1/audit-events", ("ops", w.ops),
                           params={"patient_id": patient})  # fmt: skip
        return [(e["actor_role"], e["actor_sub"], e["action"], e["resource_type"],
                 e["resource_id"]) for e in found["events"]
                if not kinds or e["resource_type"] in kinds]  # fmt: skip

    visit_id = str(visit["id"])
    assert await trail("booking", "appointment") == [
        ("patient", patient, "create", "appointment", visit_id),
        ("clinician", w.psychiatrist, "read", "appointment", visit_id),
        ("clinician", w.psychiatrist, "complete", "appointment", visit_id),
    ], "refused reads and failed changes leave no row"
    # eligibility reads are audited too (issue 13): `assessed` polled it as the patient
    eligibility = await trail("booking", "eligibility")
    assert eligibility and set(eligibility) == {
        ("patient", patient, "read", "eligibility", patient)
    }
    [(_, _, _, _, referral_id)] = await trail("referral", "referral")
    assert await trail("referral", "referral", "care_plan") == [
        ("clinician", w.psychiatrist, "create", "referral", referral_id),
        ("clinician", w.psychiatrist, "update", "care_plan", patient),
        ("patient", patient, "read", "care_plan", patient),
    ]
    created = await trail("intake")
    assert [(role, action) for role, _, action, _, _ in created] == [("patient", "create")]
    events = (await w.ok("booking", "GET", "/v1/audit-events", ("coordinator", w.coordinator),
                         params={"patient_id": patient}))["events"]  # fmt: skip
    assert all(e["correlation_id"] and e["occurred_at"] for e in events)
    assert {"content", "goals", "email"}.isdisjoint(events[0]), "ids and codes only"


async def test_reads_are_audited_for_every_record_listed(world: World) -> None:
    w = world
    before = await w.ok("booking", "GET", "/v1/audit-events", ("ops", w.ops),
                        params={"patient_id": w.patient, "limit": "1000"})  # fmt: skip
    listed = await w.ok("booking", "GET", "/v1/appointments", ("patient", w.patient),
                        params={"patient_id": w.patient})  # fmt: skip
    after = await w.ok("booking", "GET", "/v1/audit-events", ("ops", w.ops),
                       params={"patient_id": w.patient, "limit": "1000"})  # fmt: skip
    new = after["events"][len(before["events"]) :]
    # Reading the trail is recorded too (ADR 0014): ops' first read is among the new rows.
    assert (new[0]["actor_sub"], new[0]["resource_type"]) == (w.ops, "audit_trail")
    new = [e for e in new if e["resource_type"] != "audit_trail"]
    assert [(e["actor_sub"], e["action"]) for e in new] == [
        (w.patient, "read") for _ in listed["appointments"]
    ]
    assert {e["resource_id"] for e in new} == {str(a["id"]) for a in listed["appointments"]}


async def test_a_token_cannot_be_replayed_against_a_different_patient(world: World) -> None:
    """The token's subject, not a header or a body field, decides whose records are reached."""
    w = world
    body = w.assessment_body(w.other_patient)
    response = await w.call("intake", "POST", "/v1/assessments", ("patient", w.patient), json=body)
    assert (response.status_code, response.json()["code"]) == (403, "not_own_record")
    legacy = await w.call("referral", "GET", f"/v1/care-plans/{w.patient}",
                          ("clinician", w.stranger),
                          headers={"X-Clinician-Id": w.psychiatrist})  # fmt: skip
    assert legacy.status_code == 403, "X-Clinician-Id no longer names the caller"


def test_matrix_cells_are_well_formed() -> None:
    assert all(case.allowed <= set(COLUMNS) for case in CASES)
    assert all(httpx.codes(case.ok).is_success for case in CASES)
