"""Schemathesis against each service's OpenAPI document, the services running as processes on
the real Kafka and PostgreSQL: no request, valid or invalid (schemathesis' positive and negative
generation), gets a server error, and every rejection is a 4xx whose JSON body says why."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, CheckContext, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from carebridge_contracts.services import SERVICES
from carebridge_devstack.system import ON_CALL_EMAIL, LocalSystem

AuthHeaders = Callable[[httpx.Request], dict[str, str]]

pytestmark = [pytest.mark.integration, pytest.mark.journey]

# Examples per operation and generation mode, bounded so the whole fuzz stays near a minute.
EXAMPLES = 20


@schemathesis.check
def rejection_says_why(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A 4xx carries a JSON object with a non-empty reason: `message` (a refusal: code and
    message) or `detail` (a validation error, whose `errors` each name a field and a reason)."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body") from None
    reason = body.get("message") or body.get("detail") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        raise AssertionError(f"{response.status_code} without a reason: {body!r}")
    errors = body.get("errors", [])
    if not all(isinstance(e, dict) and str(e.get("reason", "")).strip() for e in errors):
        raise AssertionError(f"{response.status_code}: an error without a reason: {errors!r}")
    return None


@dataclass
class Tally:
    examples: int = 0
    operations: int = 0
    nothing_to_negate: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def line(self, service: str) -> str:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{service}: {self.operations} operations, {self.examples} requests "
            f"({statuses}), {len(self.failures)} failing operation(s)"
        )


def _described(case: Case[Any], base_url: str) -> httpx.Request:
    """The parts of a generated request that say whom it acts for (path, query ids, body)."""
    query = {k: v for k, v in (case.query or {}).items() if isinstance(v, str)}
    body = case.body if isinstance(case.body, dict) else None
    return httpx.Request(case.method, base_url + case.formatted_path, params=query, json=body)


def fuzz(
    operation: Any, mode: GenerationMode, base_url: str, auth_headers: AuthHeaders, tally: Tally
) -> None:
    """Run EXAMPLES generated requests against one operation; record a failure in `tally`."""
    # Not schemathesis' negative_data_rejection: the APIs validate in pydantic's lax mode, which
    # takes `true` for 1 or a Unix time for a date-time; that is accepted, not refused wrongly.
    checks: list[CheckFunction] = [not_a_server_error, rejection_says_why]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Case[Any]) -> None:
        # A case that leaves the token out on purpose must be refused: send it without one.
        negated = case.operation.schema.is_security_param_negated(case)
        headers = {} if negated else auth_headers(_described(case, base_url))
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        tally.examples += 1
        tally.statuses[response.status_code] += 1
        tally.by_operation[operation.label] += 1
        case.validate_response(response, checks=checks, headers=headers)

    try:
        call()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        tally.nothing_to_negate += 1  # no parameter or body: no invalid request exists
    except (Exception, BaseExceptionGroup) as exc:  # one report for every failing operation
        tally.failures.append(f"{operation.label} ({mode.value}):\n{exc}")


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_gets_a_server_error_and_every_rejection_says_why(
    system: LocalSystem, auth_headers: AuthHeaders, service: str
) -> None:
    base_url = system.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    tally = Tally()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            tally.failures.append(f"an operation the fuzzer cannot read: {result.err()}")
            continue
        operation = result.ok()
        tally.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, base_url, auth_headers, tally)
        if operation.label == "DELETE /v1/on-call-route":
            restore_on_call_route(base_url, auth_headers)  # else /readyz is 503, by design
    print(tally.line(service))
    assert tally.operations > 3 and len(tally.by_operation) == tally.operations, "all were called"
    assert not tally.failures, "\n\n".join(tally.failures)


def restore_on_call_route(base_url: str, auth_headers: AuthHeaders) -> None:
    """Put back the dev stack's on-call route that fuzzing its DELETE removed (as ops)."""
    request = httpx.Request("PUT", f"{base_url}/v1/on-call-route")
    body = {"primary": {"email": ON_CALL_EMAIL}, "escalation": {"email": ON_CALL_EMAIL}}
    response = httpx.put(request.url, json=body, headers=auth_headers(request), timeout=30)
    assert response.status_code == 200, response.text


def _response(status: int, body: bytes) -> Response:
    raw = requests.Response()
    raw.status_code, raw._content, raw.url = status, body, "http://service/v1/x"
    raw.request = requests.Request("GET", raw.url).prepare()
    raw.elapsed = timedelta(0)
    return Response.from_any(raw)


REFUSALS = [
    (422, b'{"detail": "invalid request", "errors": [{"field": "x", "reason": "bad"}]}', True),
    (409, b'{"code": "slot_taken", "message": "That slot is taken."}', True),
    (404, b'{"detail": "Not Found"}', True),
    (200, b"not even json", True),
    (401, b"", False),
    (403, b"forbidden", False),
    (422, b'{"detail": ""}', False),
    (409, b'{"code": "slot_taken"}', False),
    (422, b'{"detail": "invalid request", "errors": [{"field": "x"}]}', False),
    (400, b'["a list"]', False),
]


@pytest.mark.parametrize(("status", "body", "accepted"), REFUSALS)
def test_the_reason_check_fails_a_rejection_that_does_not_say_why(
    status: int, body: bytes, accepted: bool
) -> None:
    check: Any = rejection_says_why
    if accepted:
        check(None, _response(status, body), None)
    else:
        with pytest.raises(AssertionError):
            check(None, _response(status, body), None)
