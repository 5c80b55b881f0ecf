"""Dev bearer tokens for clients of the services: who acts is inferred from each request.

`DevAuth` is an ``httpx.Auth``: give it to a client (``httpx.AsyncClient(auth=DevAuth())``,
``CareClient``, the chaos load) and every request without an ``Authorization`` header gets a dev
token (see ``carebridge_devstack.signer``) for the principal the request acts for:

* the clinician named in ``X-Clinician-Id`` (the header that stood in for a token before);
* ops for ops routes (``/v1/_dev/*``, ``/v1/deliveries``, ``/v1/audit-events``,
  ``/v1/on-call-route``);
* the person whose contact details are written or read (``/v1/contacts/<kind>/<id>``);
* a coordinator for the clinician and therapist rosters;
* the patient in the path (``/v1/patients/<id>``, ``/v1/care-plans/<id>``), the requesting
  clinician of a new referral, the patient in the body or query (``patient_id``);
* for an appointment, assessment or referral id: its patient, or for an appointment's outcome
  (``complete``, ``no-show``, a clinician's ``cancel``) its clinician. DevAuth learns whose a
  record is from the responses it sees (a booking answers with the appointment);
* a coordinator otherwise (directory reads such as ``GET /v1/slots``).

A request that names its own ``Authorization`` keeps it: tests about refusals send
``carebridge_devstack.testing.bearer(role, sub)`` themselves.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from carebridge_devstack.signer import TokenCache
from carebridge_shared.auth import SUBJECT, Role

Actor = tuple[Role, str]

OPS: Actor = ("ops", "dev-ops")
COORDINATOR: Actor = ("coordinator", "dev-coordinator")
# Whose a record is, when DevAuth never saw it: the service answers 404 for a missing one.
UNKNOWN_PATIENT = "dev-unknown-patient"
UNKNOWN_CLINICIAN = "dev-unknown-clinician"
OPS_ROUTES = frozenset({"_dev", "deliveries", "audit-events", "on-call-route"})
CLINICIAN_ACTIONS = frozenset({"complete", "no-show"})


@dataclass(frozen=True, slots=True)
class Owner:
    patient_id: str
    clinician_id: str | None


def infer_actor(
    method: str,
    path: str,
    params: Mapping[str, str],
    body: Mapping[str, Any],
    owners: Mapping[str, Owner],
) -> Actor:
    """The principal a request to a carebridge API acts for (rules in the module docstring)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["v1"]:
        parts = parts[1:]
    head = parts[0] if parts else ""
    record_id = parts[1] if len(parts) > 1 else None
    action = parts[2] if len(parts) > 2 else ""
    if head in OPS_ROUTES:
        return OPS
    if head == "contacts" and len(parts) >= 3 and parts[1] in ("patient", "clinician"):
        return ("patient" if parts[1] == "patient" else "clinician", parts[2])
    if head in ("clinicians", "therapists"):
        return COORDINATOR
    if head in ("patients", "care-plans") and record_id is not None:
        return ("patient", record_id)
    if head == "referrals" and method == "POST" and record_id is None:
        requesting = body.get("requesting_clinician_id")
        if isinstance(requesting, str):
            return ("clinician", requesting)
    if head in ("appointments", "assessments", "referrals") and record_id is not None:
        owner = owners.get(record_id)
        clinician_acts = action in CLINICIAN_ACTIONS or (
            action == "cancel" and body.get("cancelled_by") == "clinician"
        )
        if head == "appointments" and clinician_acts:
            clinician_id = owner.clinician_id if owner is not None else None
            return ("clinician", clinician_id or UNKNOWN_CLINICIAN)
        if head == "referrals" and (owner is None or action == "complete"):
            return COORDINATOR
        return ("patient", owner.patient_id if owner else UNKNOWN_PATIENT)
    patient = body.get("patient_id") or params.get("patient_id")
    if isinstance(patient, str):
        return ("patient", patient)
    if method == "POST" and head in ("assessments", "appointments"):
        return ("patient", UNKNOWN_PATIENT)  # a body without a patient: the service says 422
    clinician = params.get("clinician_id") if head == "appointments" else None
    clinician = clinician or (params.get("therapist_id") if head == "referrals" else None)
    if clinician:
        return ("clinician", clinician)
    return COORDINATOR


def _body(request: httpx.Request) -> Mapping[str, Any]:
    if "json" not in request.headers.get("content-type", ""):
        return {}
    try:
        found = json.loads(request.content or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class DevAuth(httpx.Auth):
    """Signs each request as the principal it acts for (see `infer_actor`)."""

    requires_response_body = True

    def __init__(self, tokens: TokenCache | None = None) -> None:
        self.tokens = tokens or TokenCache()
        self.owners: dict[str, Owner] = {}

    def actor_for(self, request: httpx.Request) -> Actor:
        role: Role
        clinician = request.headers.get("X-Clinician-Id")
        if clinician:
            role, sub = "clinician", clinician
        else:
            params = dict(request.url.params)
            role, sub = infer_actor(
                request.method, request.url.path, params, _body(request), self.owners
            )
        if not SUBJECT.match(sub):  # a request testing a malformed id: let the service say so
            sub = UNKNOWN_CLINICIAN if role == "clinician" else UNKNOWN_PATIENT
        return role, sub

    def headers_for(self, role: Role, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.token(role, sub)}"}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" not in request.headers:
            request.headers.update(self.headers_for(*self.actor_for(request)))
        response = yield request
        if response.headers.get("content-type", "").startswith("application/json"):
            with contextlib.suppress(ValueError):
                self.remember(response.json())

    def remember(self, payload: object) -> None:
        """Note whose each record in a response is (anything with an id and a patient_id)."""
        if isinstance(payload, list):
            for item in payload:
                self.remember(item)
        elif isinstance(payload, dict):
            patient = payload.get("patient_id")
            record_id = payload.get("id") or payload.get("assessment_id")
            if isinstance(patient, str) and record_id is not None:
                clinician = payload.get("clinician_id") or payload.get("therapist_id")
                self.owners[str(record_id)] = Owner(
                    patient, clinician if isinstance(clinician, str) else None
                )
            for value in payload.values():
                if isinstance(value, list | dict):
                    self.remember(value)
