"""The policy around a record applied on its own: retries with backoff, then a dead letter.

Connection trouble is not the event's fault: it is retried without spending attempts (and,
while the consumer stops, left uncommitted to come again after the restart). An unreadable
record is parked at once: reading it again cannot help.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from carebridge_contracts import ContractError, ProducerNotTopicOwner
from carebridge_shared.consumer.dead_letters import DeadLetters
from carebridge_shared.consumer.delivery import DEAD_LETTERED, Delivery, Handling, Item
from carebridge_shared.logging import get_logger
from carebridge_shared.metrics import (
    EVENTS_PRODUCER_REFUSED,
    HANDLER_FAILURES,
    HANDLER_RETRIES,
    note_error,
)

log = get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.initial_backoff * 2 ** max(attempt - 1, 0), self.max_backoff))


class RetryThenDeadLetter:
    """A middleware for a delivery of one record: the handling is tried until it succeeds,
    or until the event failed `max_attempts` times; then the record is parked."""

    def __init__(
        self,
        group_id: str,
        policy: RetryPolicy,
        dead_letters: DeadLetters,
        stopping: asyncio.Event,
    ) -> None:
        self._group_id = group_id
        self._policy = policy
        self._dead_letters = dead_letters
        self._stopping = stopping

    def __call__(self, apply: Handling) -> Handling:
        async def settle(delivery: Delivery) -> None:
            [item] = delivery.items
            if item.unreadable is not None:
                await self._park_unreadable(item, item.unreadable)
            else:
                await self._retry(apply, delivery, item)
            if not delivery.outcomes:
                delivery.outcomes = [DEAD_LETTERED]

        return settle

    async def _retry(self, apply: Handling, delivery: Delivery, item: Item) -> None:
        attempts = transient_attempts = 0
        while True:
            try:
                await apply(delivery)
                return
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                transient_attempts += 1
                await self._wait_after_transient(exc, item, transient_attempts)
            except Exception as exc:
                attempts += 1
                if not await self._wait_after_failure(exc, item, attempts):
                    return

    async def _wait_after_transient(self, exc: BaseException, item: Item, attempt: int) -> None:
        HANDLER_FAILURES.labels(self._group_id, "true").inc()
        note_error("consumer", type(exc).__name__)
        if self._stopping.is_set():
            raise exc  # not committed: redelivered after restart
        HANDLER_RETRIES.labels(self._group_id, item.record.topic, "true").inc()
        delay = self._policy.delay(attempt)
        log.warning("event_transient_failure", error=type(exc).__name__, delay_s=delay)
        await asyncio.sleep(delay)

    async def _wait_after_failure(self, exc: Exception, item: Item, attempts: int) -> bool:
        """False once the record is dead-lettered (attempts spent)."""
        HANDLER_FAILURES.labels(self._group_id, "false").inc()
        note_error("consumer", type(exc).__name__)
        if attempts >= self._policy.max_attempts:
            await self._dead_letters.park(item.record, f"{type(exc).__name__}: {exc}", attempts)
            return False
        HANDLER_RETRIES.labels(self._group_id, item.record.topic, "false").inc()
        delay = self._policy.delay(attempts)
        log.warning(
            "event_failed_will_retry",
            type=item.key[1],
            attempt=attempts,
            error=type(exc).__name__,
            delay_s=delay,
        )
        await asyncio.sleep(delay)
        return True

    async def _park_unreadable(self, item: Item, exc: Exception) -> None:
        record = item.record
        if isinstance(exc, ProducerNotTopicOwner):
            EVENTS_PRODUCER_REFUSED.labels(self._group_id, record.topic).inc()
            log.warning(
                "event_producer_refused",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                producer=exc.producer,
                owner=exc.owner,
            )
        if isinstance(exc, ContractError):
            reason = f"{type(exc).__name__}: {exc}"
        else:  # a parser bug: the message of a non-contract error may quote the input (PHI),
            reason = f"{type(exc).__name__}: unparseable"  # so only its class is kept
        await self._dead_letters.park(record, reason, attempts=1)
