"""What a service subscribes to, and what each handler call gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from carebridge_contracts import BaseEvent, Envelope
from carebridge_contracts.registry import topic_for
from carebridge_shared import tracing
from carebridge_shared.clock import Clock
from carebridge_shared.context import S, ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.outbox import Outbox, Staged

E = TypeVar("E", bound=BaseEvent)


@dataclass(frozen=True)
class EventContext(Generic[S]):
    """One handler call: the event's envelope and record, `conn` inside the effect's
    transaction, and the service's context (settings, outbox, clock, extras)."""

    envelope: Envelope
    conn: Connection
    service: ServiceContext[S]
    topic: str
    partition: int
    offset: int
    headers: Sequence[tuple[str, bytes]] = ()

    @property
    def settings(self) -> S:
        return self.service.settings

    @property
    def outbox(self) -> Outbox:
        return self.service.outbox

    @property
    def clock(self) -> Clock:
        return self.service.clock

    async def publish(self, event: BaseEvent, *, subject: str | None = None) -> Envelope:
        """Stage `event` in this transaction, caused by this event: its correlation id, this
        event as the cause, and the trace of this record's handling."""
        return await self.outbox.add(
            self.conn,
            event,
            subject=subject,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
        )

    def staged(self, event: BaseEvent, *, subject: str | None = None) -> Staged:
        """`event` for `Outbox.add_many`, caused by this one: its correlation id, this event
        as the cause, and the trace this event's record carried."""
        return Staged(
            event,
            correlation_id=self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
            trace=tracing.extract(self.headers),
            subject=subject,
        )


Handler = Callable[[Any, EventContext[Any]], Awaitable[None]]
# A batch handler gets consecutive fresh events of one type, in offset order, all in one
# transaction: it applies their effects set-based (`unnest`, `executemany`) and stages its
# events with `Outbox.add_many([ctx.staged(e) for ...])`, each carrying its own ids.
BatchHandler = Callable[[Sequence[tuple[Any, EventContext[Any]]]], Awaitable[None]]
HandlerKey = tuple[str, str]  # (topic, event type)


class Subscriptions(Generic[S]):
    """The handlers of one service, declared at module level like FastAPI's `APIRouter`:

        subscriptions = Subscriptions[BookingSettings]()

        @subscriptions.on(SymptomsWorsened)
        async def symptoms_worsened(event: SymptomsWorsened, ctx: EventContext[...]) -> None:
            ...

    The decorators return the function unchanged; the consumer runtime dispatches to it."""

    def __init__(self) -> None:
        self.handlers: dict[HandlerKey, Handler] = {}
        self.batch_handlers: dict[HandlerKey, BatchHandler] = {}
        self._events: list[type[BaseEvent]] = []

    def on(
        self, event_cls: type[E]
    ) -> Callable[
        [Callable[[E, EventContext[S]], Awaitable[None]]],
        Callable[[E, EventContext[S]], Awaitable[None]],
    ]:
        """Subscribe the handler of one event type (any version of it reaching this group)."""

        def subscribe(
            fn: Callable[[E, EventContext[S]], Awaitable[None]],
        ) -> Callable[[E, EventContext[S]], Awaitable[None]]:
            key = (str(topic_for(event_cls)), event_cls.event_type)
            if key in self.handlers:
                raise ValueError(f"{event_cls.event_type} already has a handler here")
            self.handlers[key] = fn
            self._events.append(event_cls)
            return fn

        return subscribe

    def on_batch(
        self, event_cls: type[E]
    ) -> Callable[
        [Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]]],
        Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]],
    ]:
        """Subscribe the batch handler of one event type (see `BatchHandler`). A record that
        has to be applied on its own (a poison record in its poll, a retry) is handed to it
        as a batch of one."""

        def subscribe(
            fn: Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]],
        ) -> Callable[[Sequence[tuple[E, EventContext[S]]]], Awaitable[None]]:
            async def one(event: E, ctx: EventContext[S]) -> None:
                await fn([(event, ctx)])

            self.on(event_cls)(one)
            self.batch_handlers[(str(topic_for(event_cls)), event_cls.event_type)] = fn
            return fn

        return subscribe

    @property
    def events(self) -> tuple[type[BaseEvent], ...]:
        """The event classes given a handler, in the order they were subscribed."""
        return tuple(self._events)

    @property
    def topics(self) -> list[str]:
        return sorted({topic for topic, _ in self.handlers})
