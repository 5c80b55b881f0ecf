"""Domain refusals as HTTP answers: {"code": ..., "message": ..., ...} with a 4xx status."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from carebridge_referral.domain import Refusal


class Refused(Exception):
    """Raised by the service layer; rendered by `install_error_handler`."""

    def __init__(self, refusal: Refusal, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal
        self.headers = dict(headers or {})


def refuse(code: str, message: str, status: int = 409, **extra: object) -> Refused:
    return Refused(Refusal(code, message, status, extra))


def not_found(kind: str) -> Refused:
    return refuse(f"{kind}_not_found", f"No such {kind.replace('_', ' ')}.", 404)


def check(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise Refused(refusal)


def install_error_handler(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        refusal = exc.refusal
        return JSONResponse(
            status_code=refusal.status,
            content={"code": refusal.code, "message": refusal.message, **refusal.extra},
            headers=exc.headers,
        )
