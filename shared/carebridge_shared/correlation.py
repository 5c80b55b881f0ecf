"""The correlation id of the work in progress, carried in a context variable.

On an HTTP request the server makes the correlation id (ADR 0014): it is what the audit log,
the logs, the events the request causes and the `X-Correlation-ID` response header carry. A
caller's own `X-Correlation-ID` is client input: it is kept beside the server's id (audit log
column and log field `client_correlation_id`) only when it is a UUID or 16-64 hex digits, so it
cannot carry a name or an e-mail address, and it never joins the request to other records.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

import structlog

# A UUID, or a hex trace/request id (W3C trace ids are 32 hex digits): nothing that can spell PHI.
CLIENT_CORRELATION_ID = re.compile(
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,64})$"
)

_correlation_id: ContextVar[uuid.UUID | None] = ContextVar("correlation_id", default=None)
_causation_id: ContextVar[uuid.UUID | None] = ContextVar("causation_id", default=None)
_client_correlation_id: ContextVar[str | None] = ContextVar("client_correlation_id", default=None)


def current_correlation_id() -> uuid.UUID:
    """The id bound for this request or event, or a fresh one when nothing is bound."""
    return _correlation_id.get() or uuid.uuid4()


def current_causation_id() -> uuid.UUID | None:
    return _causation_id.get()


def current_client_correlation_id() -> str | None:
    """The caller's own correlation id of this request, when it sent an acceptable one."""
    return _client_correlation_id.get()


def acceptable_client_correlation_id(raw: str | None) -> str | None:
    """`raw` when it matches CLIENT_CORRELATION_ID, else None (client input is not trusted)."""
    if raw is not None and CLIENT_CORRELATION_ID.match(raw):
        return raw
    return None


@contextlib.contextmanager
def correlation_scope(
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None = None,
    *,
    client_correlation_id: str | None = None,
) -> Iterator[None]:
    corr_token = _correlation_id.set(correlation_id)
    cause_token = _causation_id.set(causation_id)
    client_token = _client_correlation_id.set(client_correlation_id)
    bound: dict[str, str | None] = {
        "correlation_id": str(correlation_id),
        "causation_id": str(causation_id) if causation_id else None,
    }
    if client_correlation_id is not None:
        bound["client_correlation_id"] = client_correlation_id
    with structlog.contextvars.bound_contextvars(**bound):
        try:
            yield
        finally:
            _correlation_id.reset(corr_token)
            _causation_id.reset(cause_token)
            _client_correlation_id.reset(client_token)
