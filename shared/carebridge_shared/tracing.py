"""OpenTelemetry tracing: W3C trace context from the HTTP request, through the outbox and Kafka
headers, into every consumer and what it writes next.

The SDK tracer provider is always installed, so every request and event gets a real trace id
that travels in the `traceparent` header. Spans leave the process only when an OTLP endpoint
is configured (OTEL_EXPORTER_OTLP_ENDPOINT); otherwise they are dropped when they end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def configure_tracing(service: str, *, otlp_endpoint: str = "", instance: str = "") -> None:
    """Install the SDK tracer provider once per process; export over OTLP/HTTP when
    `otlp_endpoint` (the collector's base URL) is set."""
    global _provider
    if _provider is not None:
        return  # several apps in one process (tests) share the first provider
    attributes = {"service.name": f"carebridge-{service}", "service.namespace": "carebridge"}
    if instance:
        attributes["service.instance.id"] = instance
    provider = TracerProvider(resource=Resource.create(attributes))
    if otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider


def flush_tracing(timeout_s: float = 5.0) -> None:
    """Hand the spans still buffered to the exporter (at shutdown)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def tracer() -> trace.Tracer:
    return trace.get_tracer("carebridge")


def inject(carrier: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Add `traceparent` (and `tracestate`) of the current (or given) span to `carrier`."""
    _PROPAGATOR.inject(carrier, context=context)
    return carrier


def inject_span(carrier: dict[str, str], current: Span) -> dict[str, str]:
    """Add `current`'s traceparent to `carrier`, replacing one already there."""
    return inject(carrier, trace.set_span_in_context(current))


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None outside any trace."""
    return inject({}).get(TRACEPARENT)


def extract(headers: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]]) -> Context:
    """The remote span context carried in HTTP or Kafka headers (empty when there is none)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {
        name.lower(): value.decode(errors="replace") if isinstance(value, bytes) else value
        for name, value in pairs
        if name.lower() in TRACE_HEADERS
    }
    return _PROPAGATOR.extract(carrier)


def context_of(traceparent: str | None) -> Context:
    """The span context a stored traceparent names (empty for None or garbage)."""
    return extract({TRACEPARENT: traceparent} if traceparent else {})


def trace_id_of(traceparent: str | bytes | None) -> str | None:
    """The 32-hex trace id inside a traceparent header value."""
    if traceparent is None:
        return None
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    parts = text.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def format_traceparent(span: Span) -> str | None:
    """`00-<trace id>-<span id>-<flags>` of `span` (the value a `traceresponse` carries)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current span, child of `parent` (default: the current context). An exception that
    escapes marks it failed."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def mark_failed(current: Span, reason: str) -> None:
    current.set_status(Status(StatusCode.ERROR, reason))


__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_HEADERS",
    "SpanKind",
    "configure_tracing",
    "context_of",
    "current_traceparent",
    "extract",
    "flush_tracing",
    "format_traceparent",
    "inject",
    "inject_span",
    "mark_failed",
    "span",
    "trace_id_of",
    "tracer",
]
