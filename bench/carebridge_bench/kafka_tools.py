"""Kafka helpers of the bench: topics, consumer-group start offsets, back-fill, timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import OffsetAndMetadata

from carebridge_bench.worker import INPUT_TOPIC
from carebridge_contracts import kafka_headers
from carebridge_contracts.registry import all_topics_with_dlq
from carebridge_devstack.testing import sample_assessment, wrap
from carebridge_shared.kafka import bootstrap_list, make_producer, security_options

# Broker time stamps each record as it is appended: "when did the event appear on its topic"
# is then read back from the record, with no consumer polling delay in the measurement.
LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


async def create_topics(bootstrap: str, *, partitions: int, replication_factor: int) -> list[str]:
    """Every registry topic (and its .dlq), created the way the services would, but stamped
    with broker time. Topics that exist already (the stack's provisioning made them) are
    switched to broker time; nothing else about them changes."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_list(bootstrap), client_id="bench", **security_options()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in all_topics_with_dlq() if t not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs=LOG_APPEND_TIME,
                    )
                    for t in missing
                ]
            )
        existing_ours = [t for t in all_topics_with_dlq() if t in existing]
        if existing_ours:
            await admin.alter_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t, LOG_APPEND_TIME)
                    for t in existing_ours
                ]
            )
        return missing
    finally:
        await admin.close()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    deadline = time.monotonic() + 30
    found = consumer.partitions_for_topic(topic)
    while not found:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has no partitions after 30 s")
        await asyncio.sleep(0.2)
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(found)]


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap), group_id=None, **security_options()
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return offsets
    finally:
        await consumer.stop()


async def pin_group(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit `offsets` for a consumer group that has no member yet: it will start there."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        group_id=group,
        enable_auto_commit=False,
        **security_options(),
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


def patient_ids(prefix: str, count: int) -> list[str]:
    """Patient ids of equal length, so every run of the bench sends messages of one size."""
    return [f"{prefix}{i:06d}" for i in range(count)]


async def backfill_assessments(bootstrap: str, prefix: str, messages: int) -> int:
    """Publish `messages` AssessmentCompleted envelopes (a quarter as many patients, so most
    patients have several events); returns the size of one message in bytes."""
    patients = patient_ids(prefix, max(1, messages // 4))
    producer = make_producer(bootstrap, client_id="bench-backfill")
    await producer.start()
    size = 0
    sequences: dict[str, int] = {}
    try:
        pending = []
        for i in range(messages):
            patient = patients[i % len(patients)]
            sequences[patient] = sequences.get(patient, 0) + 1
            envelope = wrap(sample_assessment(patient), patient, sequences[patient])
            value = envelope.to_bytes()
            size = len(value)
            pending.append(
                await producer.send(
                    INPUT_TOPIC,
                    value=value,
                    key=patient.encode(),
                    headers=kafka_headers(envelope),
                )
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return size


@dataclass(frozen=True)
class Seen:
    """One record as the bench saw it: key, value, and its timestamp (seconds, epoch)."""

    topic: str
    key: str
    value: bytes
    timestamp: float


async def read_from(
    bootstrap: str,
    topic: str,
    start: dict[TopicPartition, int],
    *,
    keep: Callable[[str], bool],
    until: Callable[[list[Seen]], bool] | None = None,
    timeout: float,  # noqa: ASYNC109 - bounds the whole read
) -> list[Seen]:
    """Records of `topic` from `start` whose key passes `keep`: until `until(found)` holds, or
    (without `until`) up to the end each partition had when the read began; at most `timeout`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        **security_options(),
    )
    await consumer.start()
    found: list[Seen] = []
    try:
        partitions = await _partitions(consumer, topic)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start.get(tp, 0))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until(found):
                break
            if until is None:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(p >= ends[tp] for p, tp in zip(positions, partitions, strict=True)):
                    break
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            for records in batches.values():
                for r in records:
                    key = (r.key or b"").decode()
                    if keep(key):
                        found.append(Seen(r.topic, key, r.value or b"", r.timestamp / 1000.0))
        return found
    finally:
        await consumer.stop()
