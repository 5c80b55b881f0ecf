"""HTTP plumbing every service API shares: correlation ids, trace spans, latency metrics,
errors without PHI."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.trace import INVALID_SPAN, Span

from carebridge_shared import tracing
from carebridge_shared.correlation import acceptable_client_correlation_id, correlation_scope
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import HTTP_DURATION, note_error
from carebridge_shared.refusals import Refused

log = get_logger(__name__)

# Responses carry the server's correlation id; a request's own value is kept beside it
# (`client_correlation_id`) when it is a UUID or a hex id (carebridge_shared.correlation).
CORRELATION_HEADER = "X-Correlation-ID"
# W3C Trace Context level 2: the server's span, so a caller learns the trace id it started.
TRACE_RESPONSE_HEADER = "traceresponse"
# Probes and scrapes are not traced (they would bury the traces that matter).
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@contextlib.contextmanager
def _server_span(request: Request) -> Iterator[Span]:
    """The request's span, continuing the caller's `traceparent` when it sent one. Its name and
    attributes use the route template, never the path (paths hold patient ids)."""
    if request.url.path in UNTRACED_PATHS:
        yield INVALID_SPAN
        return
    with tracing.span(
        request.method,
        kind=tracing.SpanKind.SERVER,
        parent=tracing.extract(request.headers),
        attributes={"http.request.method": request.method},
    ) as span:
        yield span


def install_http_plumbing(app: FastAPI) -> None:
    @app.middleware("http")
    async def correlate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # The server's id, always: a caller's id must not join its request to other records.
        correlation_id = uuid.uuid4()
        client_id = acceptable_client_correlation_id(request.headers.get(CORRELATION_HEADER))
        started = time.perf_counter()
        status = 500
        with (
            correlation_scope(correlation_id, client_correlation_id=client_id),
            _server_span(request) as span,
        ):
            try:
                response = await call_next(request)
                status = response.status_code
            except Exception as exc:
                note_error("http", type(exc).__name__)
                raise
            finally:
                route = getattr(request.scope.get("route"), "path", "unmatched")
                elapsed = time.perf_counter() - started
                HTTP_DURATION.labels(request.method, route, str(status)).observe(elapsed)
                span.update_name(f"{request.method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    tracing.mark_failed(span, f"HTTP {status}")
            log.info(
                "http_request",
                method=request.method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 1),
                trace_id=tracing.trace_id_of(tracing.format_traceparent(span)),
            )
        response.headers[CORRELATION_HEADER] = str(correlation_id)
        if (traceparent := tracing.format_traceparent(span)) is not None:
            response.headers[TRACE_RESPONSE_HEADER] = traceparent
        return response

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        refusal = exc.refusal
        return JSONResponse(
            status_code=refusal.status,
            content={"code": refusal.code, "message": refusal.message, **refusal.extra},
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # The submitted values are left out on purpose: they may be PHI.
        errors = [
            {
                "field": ".".join(str(part) for part in err.get("loc", ()) if part != "body"),
                "reason": err.get("msg", "invalid"),
                "type": err.get("type", "value_error"),
            }
            for err in exc.errors()
        ]
        return JSONResponse(
            status_code=422, content={"detail": "invalid request", "errors": errors}
        )
