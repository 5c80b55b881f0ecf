"""The correlation id of the work in progress, carried in a context variable."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

import structlog

_correlation_id: ContextVar[uuid.UUID | None] = ContextVar("correlation_id", default=None)
_causation_id: ContextVar[uuid.UUID | None] = ContextVar("causation_id", default=None)


def current_correlation_id() -> uuid.UUID:
    """The id bound for this request or event, or a fresh one when nothing is bound."""
    return _correlation_id.get() or uuid.uuid4()


def current_causation_id() -> uuid.UUID | None:
    return _causation_id.get()


@contextlib.contextmanager
def correlation_scope(
    correlation_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Iterator[None]:
    corr_token = _correlation_id.set(correlation_id)
    cause_token = _causation_id.set(causation_id)
    with structlog.contextvars.bound_contextvars(
        correlation_id=str(correlation_id),
        causation_id=str(causation_id) if causation_id else None,
    ):
        try:
            yield
        finally:
            _correlation_id.reset(corr_token)
            _causation_id.reset(cause_token)
