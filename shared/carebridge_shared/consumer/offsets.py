"""Partitions and offsets: when a subscriber is ready to receive, and committing what was
applied in the background (issue 16: an awaited commit cost ~7 ms per poll)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from carebridge_shared.consumer.records import Record
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

# A commit that failed while its partitions stayed assigned is tried again after this long.
COMMIT_RETRY_S = 0.5
# Offsets processed within this long share one commit (a write to Kafka's offsets topic): at
# low rates a poll holds one record, and a commit per record was much of Kafka's CPU per
# journey (issue 16). A crash redelivers at most this much more; the inbox drops it.
COMMIT_LINGER_S = 0.2


class AssignmentTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Knows when the subscriber is ready to receive: it joined its group and the starting
    position of every assigned partition is resolved (with offset reset "latest" a position
    is only fixed on the first fetch; a record published before that would be skipped)."""

    def __init__(self, group_id: str, topic: str) -> None:
        self.joined = asyncio.Event()
        self.consumer: Callable[[], Any] = lambda: None
        self._group_id = group_id
        self._topic = topic
        self._resolving: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Not ready again until the new assignment's positions are resolved.
        self.joined.clear()
        if self._resolving is not None:
            self._resolving.cancel()
        log.info("partitions_revoked", group=self._group_id, partitions=len(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info(
            "partitions_assigned",
            group=self._group_id,
            topic=self._topic,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )
        # Resolving positions needs the rebalance to finish first: do it outside the callback.
        self._resolving = asyncio.create_task(self._resolve_positions(list(assigned)))

    async def _resolve_positions(self, assigned: list[Any]) -> None:
        consumer = self.consumer()
        try:
            for partition in assigned if consumer is not None else []:
                await consumer.position(partition)
        except Exception as exc:  # a new rebalance superseded this one; it will set joined
            log.info("positions_not_resolved", group=self._group_id, error=type(exc).__name__)
            return
        self.joined.set()


class OffsetCommitter:
    """Commits processed offsets in the background: the highest per partition, one commit at
    a time, so commits never go backwards and never hold up the next poll."""

    def __init__(self, consumer: Callable[[], Any], group_id: str) -> None:
        self._consumer = consumer
        self._group_id = group_id
        self._pending: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Event()  # commit now: the consumer is about to close

    def schedule(self, records: Sequence[Record]) -> None:
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._pending[partition] = max(self._pending.get(partition, 0), record.offset + 1)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flushing.wait(), COMMIT_LINGER_S)
        while self._pending:
            offsets, self._pending = self._pending, {}
            consumer = self._consumer()
            if consumer is None:
                return
            try:
                await consumer.commit(
                    {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}
                )
            except CommitFailedError:
                # The group rebalanced under this commit (its generation is gone). Its records
                # come again to whoever owns each partition now, and the inbox drops what was
                # applied here. Not retried: a commit sent with a stale generation while the
                # group rejoins makes aiokafka reset its generation and rejoin once more, so
                # retries faster than a heartbeat kept two members rebalancing each other.
                log.info("offsets_not_committed", group=self._group_id, error="CommitFailedError")
            except Exception as exc:
                log.info("offsets_not_committed", group=self._group_id, error=type(exc).__name__)
                # Tried again while the partitions stay assigned here (Kafka was away).
                assigned = set(consumer.assignment())
                for partition, offset in offsets.items():
                    if partition in assigned:
                        self._pending[partition] = max(self._pending.get(partition, 0), offset)
                if self._pending:
                    await asyncio.sleep(COMMIT_RETRY_S)

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for the commits scheduled so far (before the consumer closes), at most
        `timeout`: what is not committed by then is read again after the restart."""
        self._flushing.set()
        task = self._task
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
