"""Background offset commits: highest offset per partition, retried while still assigned."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from carebridge_shared.consumer import offsets as runtime


def _record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


class FlakyConsumer:
    """Refuses the first `failures` commits; owns partitions 0 and 1 until `lose` is set."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionError("coordinator away")
        self.committed: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.lose_partition_1 = False

    def assignment(self) -> set[TopicPartition]:
        owned = {TopicPartition("t", 0), TopicPartition("t", 1)}
        return owned - {TopicPartition("t", 1)} if self.lose_partition_1 else owned

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.committed.append(offsets)


async def test_commits_never_go_backwards_and_a_failed_one_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "COMMIT_RETRY_S", 0.0)
    kafka = FlakyConsumer(failures=1)
    committer = runtime.OffsetCommitter(lambda: kafka, "g")
    committer.schedule([_record(0, 5), _record(0, 3), _record(1, 9)])
    await committer.flush()
    assert kafka.committed == [
        {
            TopicPartition("t", 0): OffsetAndMetadata(6, ""),
            TopicPartition("t", 1): OffsetAndMetadata(10, ""),
        }
    ]


async def test_a_partition_taken_by_a_rebalance_is_not_committed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "COMMIT_RETRY_S", 0.0)
    kafka = FlakyConsumer(failures=1)
    kafka.lose_partition_1 = True
    committer = runtime.OffsetCommitter(lambda: kafka, "g")
    committer.schedule([_record(0, 1), _record(1, 1)])
    await committer.flush()
    committed: list[Any] = kafka.committed
    assert committed == [{TopicPartition("t", 0): OffsetAndMetadata(2, "")}]


async def test_offsets_processed_within_the_linger_share_one_commit() -> None:
    kafka = FlakyConsumer(failures=0)
    committer = runtime.OffsetCommitter(lambda: kafka, "g")
    committer.schedule([_record(0, 1)])
    for _ in range(5):  # the commit task runs (a committer without a linger commits here)
        await asyncio.sleep(0)
    committer.schedule([_record(0, 2)])
    committer.schedule([_record(1, 7)])
    await asyncio.sleep(runtime.COMMIT_LINGER_S * 2)
    assert kafka.committed == [
        {
            TopicPartition("t", 0): OffsetAndMetadata(3, ""),
            TopicPartition("t", 1): OffsetAndMetadata(8, ""),
        }
    ]
    committer.schedule([_record(0, 3)])
    await committer.flush()  # the consumer closes: no linger
    assert kafka.committed[-1] == {TopicPartition("t", 0): OffsetAndMetadata(4, "")}


async def test_a_commit_refused_by_a_rebalance_is_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retrying with the old generation while the group rejoins would make aiokafka rejoin
    again: two replicas rebalanced each other every heartbeat (found in the short chaos run)."""
    monkeypatch.setattr(runtime, "COMMIT_RETRY_S", 0.0)
    kafka = FlakyConsumer(failures=1, error=CommitFailedError())
    committer = runtime.OffsetCommitter(lambda: kafka, "g")
    committer.schedule([_record(0, 4)])
    await committer.flush()
    assert kafka.failures == 0 and kafka.committed == []
    committer.schedule([_record(0, 5)])  # a later poll's offsets commit as usual
    await committer.flush()
    assert kafka.committed == [{TopicPartition("t", 0): OffsetAndMetadata(6, "")}]
