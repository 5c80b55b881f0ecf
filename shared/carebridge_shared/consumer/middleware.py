"""What is done around handling a delivery, one wrapper per concern, the way FastStream's
middlewares wrap a subscriber: tracing, correlation ids, metrics, logging, the effect hook.
`ConsumerRuntime` composes them in one list (`delivery.compose`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from carebridge_contracts import Envelope, type_from_headers
from carebridge_shared import tracing
from carebridge_shared.consumer.delivery import (
    APPLIED,
    DEAD_LETTERED,
    DUPLICATE,
    Delivery,
    Handling,
    Item,
    Middleware,
)
from carebridge_shared.correlation import correlation_scope
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    EVENTS_APPLIED,
    EVENTS_DUPLICATE,
    HANDLER_DURATION,
    MESSAGES_CONSUMED,
)

log = get_logger(__name__)

EffectHook = Callable[[Envelope], Awaitable[None]]


def tracing_spans(group_id: str) -> Middleware:
    """One `<topic> process` span per record, continuing the trace its `traceparent` header
    carries; its handler runs inside it, so what the handler stages in the outbox carries
    the trace on. The span holds the record's outcome; a dead letter marks it failed."""

    def wrap(handle: Handling) -> Handling:
        async def traced(delivery: Delivery) -> None:
            spans = [_start_span(item, group_id) for item in delivery.items]
            delivery.handler_scopes.append(
                lambda index: trace.use_span(spans[index], end_on_exit=False)
            )
            try:
                await handle(delivery)
            except BaseException as exc:
                for span in spans:
                    span.record_exception(exc)
                    tracing.mark_failed(span, type(exc).__name__)
                raise
            finally:
                for span, outcome in zip(spans, delivery.outcomes, strict=False):
                    span.set_attribute("carebridge.outcome", outcome)
                    if outcome == DEAD_LETTERED:
                        tracing.mark_failed(span, "dead-lettered")
                for span in spans:
                    span.end()

        return traced

    return wrap


def _start_span(item: Item, group_id: str) -> trace.Span:
    record = item.record
    routed = type_from_headers(record.headers or ())
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": group_id,
        "carebridge.event_type": routed[0] if routed else "unknown",
    }
    return tracing.tracer().start_span(
        f"{record.topic} process",
        context=tracing.extract(record.headers or ()),
        kind=tracing.SpanKind.CONSUMER,
        attributes=attributes,
    )


def correlation_ids() -> Middleware:
    """Each handler call runs with its event's correlation id, and the event as the cause."""

    def scope(delivery: Delivery, index: int) -> Any:
        envelope = delivery.items[index].envelope
        if envelope is None:
            raise ValueError("an unreadable record has no handler")
        return correlation_scope(envelope.correlation_id, envelope.event_id)

    def wrap(handle: Handling) -> Handling:
        async def correlated(delivery: Delivery) -> None:
            delivery.handler_scopes.append(lambda index: scope(delivery, index))
            await handle(delivery)

        return correlated

    return wrap


def metrics(group_id: str) -> Middleware:
    """Per record: consumed (by topic and outcome) and its share of the handling time; per
    event type: applied; per group: duplicates. Nothing is counted for a handling that
    raised: its records are handled again."""

    def wrap(handle: Handling) -> Handling:
        async def measured(delivery: Delivery) -> None:
            started = time.perf_counter()
            await handle(delivery)
            seconds = (time.perf_counter() - started) / max(len(delivery.items), 1)
            _count(group_id, delivery, seconds)

        return measured

    return wrap


def _count(group_id: str, delivery: Delivery, seconds: float) -> None:
    applied: Counter[str] = Counter()
    consumed: Counter[tuple[str, str]] = Counter()
    for item, outcome in zip(delivery.items, delivery.outcomes, strict=True):
        consumed[(item.record.topic, outcome)] += 1
        if outcome == APPLIED:
            applied[item.key[1]] += 1
    for event_type, count in applied.items():
        EVENTS_APPLIED.labels(group_id, event_type).inc(count)
    duplicates = sum(n for (_, outcome), n in consumed.items() if outcome == DUPLICATE)
    if duplicates:
        EVENTS_DUPLICATE.labels(group_id).inc(duplicates)
    for (topic, outcome), count in consumed.items():
        MESSAGES_CONSUMED.labels(group_id, topic, outcome).inc(count)
        histogram = HANDLER_DURATION.labels(group_id, topic, outcome)
        for _ in range(count):
            histogram.observe(seconds)


def logging() -> Middleware:
    """One `events_applied` line per delivery; a duplicate (rare) gets a line of its own."""

    def wrap(handle: Handling) -> Handling:
        async def logged(delivery: Delivery) -> None:
            await handle(delivery)
            applied: Counter[str] = Counter()
            for item, outcome in zip(delivery.items, delivery.outcomes, strict=True):
                if outcome == APPLIED:
                    applied[item.key[1]] += 1
                elif outcome == DUPLICATE and item.envelope is not None:
                    envelope = item.envelope
                    log.info("event_duplicate", type=envelope.type, event_id=str(envelope.event_id))
            if applied:
                log.info("events_applied", count=sum(applied.values()), types=dict(applied))

        return logged

    return wrap


def after_effect(hook: EffectHook) -> Middleware:
    """`hook` gets the envelope of every record whose effect is committed (applied now, or
    before: a duplicate), after the commit."""

    def wrap(handle: Handling) -> Handling:
        async def hooked(delivery: Delivery) -> None:
            await handle(delivery)
            for item, outcome in zip(delivery.items, delivery.outcomes, strict=True):
                if outcome in (APPLIED, DUPLICATE) and item.envelope is not None:
                    await hook(item.envelope)

        return hooked

    return wrap
