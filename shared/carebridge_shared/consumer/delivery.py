"""A delivery: records applied together, in one transaction (a poll's records, or one record
on its own), and the shape of the wrappers around handling it."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from carebridge_contracts import BaseEvent, Envelope
from carebridge_shared.consumer.records import Record, parse_from
from carebridge_shared.consumer.subscriptions import HandlerKey

# What became of a record (the `outcome` label of the consumer metrics).
APPLIED = "applied"
DUPLICATE = "duplicate"
IGNORED = "ignored"
DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Item:
    """One record of a delivery, parsed; `unreadable` is why it could not be (poison, or a
    producer that does not own the topic)."""

    record: Record
    envelope: Envelope | None = None
    event: BaseEvent | None = None
    unreadable: Exception | None = None

    @classmethod
    def read(cls, record: Record) -> Item:
        try:
            envelope, event = parse_from(record)
        except Exception as exc:  # what the record is, not a failure of this process
            return cls(record, unreadable=exc)
        return cls(record, envelope, event)

    @property
    def key(self) -> HandlerKey:
        """(topic, event type): what its handler is registered under ("" type: unreadable)."""
        return (self.record.topic, self.envelope.type if self.envelope is not None else "")

    def parsed(self) -> tuple[Envelope, BaseEvent]:
        if self.envelope is None or self.event is None:
            raise self.unreadable or ValueError("record not parsed")
        return self.envelope, self.event


# Entered around one handler call; gets the index of the (first) item handled.
HandlerScope = Callable[[int], contextlib.AbstractContextManager[Any]]


@dataclass
class Delivery:
    """Records applied together. Handling sets `outcomes` (one per item) once their
    transaction committed; wrappers add `handler_scopes` (a span, the correlation ids)."""

    items: Sequence[Item]
    outcomes: list[str] = field(default_factory=list)
    handler_scopes: list[HandlerScope] = field(default_factory=list)

    @classmethod
    def of(cls, records: Sequence[Record]) -> Delivery:
        return cls([Item.read(record) for record in records])

    @property
    def readable(self) -> bool:
        return all(item.unreadable is None for item in self.items)

    @contextlib.contextmanager
    def handler_scope(self, index: int) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for scope in self.handler_scopes:
                stack.enter_context(scope(index))
            yield


Handling = Callable[[Delivery], Awaitable[None]]
# A wrapper around handling, like a FastStream middleware: it gets the next handling and
# returns one that does its part before and after it.
Middleware = Callable[[Handling], Handling]


def compose(middlewares: Sequence[Middleware], handling: Handling) -> Handling:
    """`handling` inside `middlewares`, the first one outermost."""
    for middleware in reversed(middlewares):
        handling = middleware(handling)
    return handling
