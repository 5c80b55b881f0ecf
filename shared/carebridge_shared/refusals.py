"""Requests a service's rules turn down, answered as {"code", "message", ...} with a 4xx.

Domain modules return a `Refusal` (pure data); the service layer raises `Refused`; the handler
that `install_http_plumbing` registers renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Refusal:
    """A request the rules turn down: an HTTP status, a machine code and a message."""

    code: str
    message: str
    status: int = 409
    extra: Mapping[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """Raised by a service layer; rendered as the refusal's status and JSON body."""

    def __init__(self, refusal: Refusal, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal
        self.headers = dict(headers or {})


def refuse(code: str, message: str, status: int = 409, **extra: object) -> Refused:
    return Refused(Refusal(code, message, status, extra))


def not_found(kind: str) -> Refused:
    return refuse(f"{kind}_not_found", f"No such {kind.replace('_', ' ')}.", 404)


def check(refusal: Refusal | None) -> None:
    """Raise the refusal a rule returned, if any."""
    if refusal is not None:
        raise Refused(refusal)
