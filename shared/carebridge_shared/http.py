"""HTTP plumbing every service API shares: correlation ids, errors without PHI, health."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from carebridge_shared.correlation import correlation_scope
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import Refused

log = get_logger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"


def _correlation_from(request: Request) -> uuid.UUID:
    raw = request.headers.get(CORRELATION_HEADER)
    if raw:
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    return uuid.uuid4()


def install_http_plumbing(app: FastAPI) -> None:
    @app.middleware("http")
    async def correlate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        correlation_id = _correlation_from(request)
        started = time.perf_counter()
        with correlation_scope(correlation_id):
            response = await call_next(request)
            route = request.scope.get("route")
            log.info(
                "http_request",
                method=request.method,
                route=getattr(route, "path", "unmatched"),
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        response.headers[CORRELATION_HEADER] = str(correlation_id)
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
