"""Redrive dead letters back to the topic they came from."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from carebridge_contracts import ContractError, parse
from carebridge_shared.consumer import DLQ_CONSUMER_GROUP, DLQ_HEADERS, DLQ_ORIGINAL_TOPIC
from carebridge_shared.kafka import make_producer
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

REDRIVEN_FROM = "redriven-from"


@dataclass(frozen=True)
class RedriveResult:
    redriven: int
    other_groups: int
    invalid: int


async def redrive(
    bootstrap_servers: str,
    dlq: str,
    *,
    failed_group: str,
    progress_group: str | None = None,
    limit: int = 10_000,
) -> RedriveResult:
    """Republish the dead letters that `failed_group` parked, to the topic they came from.

    Only valid events are redriven: a record that does not parse would only be parked again,
    by every group. Other groups see the redriven copy too and drop it by event_id. The
    progress group's committed offsets make a second run redrive nothing twice; a crash between
    publish and commit may republish, which subscribers drop by event_id.
    """
    progress_group = progress_group or f"carebridge-redrive-{failed_group}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=progress_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = make_producer(bootstrap_servers, client_id=f"{progress_group}-producer")
    await consumer.start()
    await producer.start()
    redriven = other_groups = invalid = 0
    try:
        partitions = [TopicPartition(dlq, p) for p in sorted(await _partitions(consumer, dlq))]
        consumer.assign(partitions)  # manual assignment: no rebalance wait, offsets still committed
        end = await consumer.end_offsets(partitions)
        while redriven < limit:
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if all(positions[tp] >= end[tp] for tp in partitions):
                break
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    headers = dict(record.headers or ())
                    original = headers.get(DLQ_ORIGINAL_TOPIC)
                    if headers.get(DLQ_CONSUMER_GROUP) != failed_group.encode() or not original:
                        other_groups += 1
                        continue
                    try:
                        parse(record.value or b"")
                    except ContractError:
                        invalid += 1
                        continue
                    kept = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
                    origin = f"{tp.topic}:{tp.partition}:{record.offset}"
                    kept.append((REDRIVEN_FROM, origin.encode()))
                    await producer.send_and_wait(
                        original.decode(), value=record.value, key=record.key, headers=kept
                    )
                    redriven += 1
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    log.info("dlq_redriven", dlq=dlq, group=failed_group, redriven=redriven, invalid=invalid)
    return RedriveResult(redriven=redriven, other_groups=other_groups, invalid=invalid)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    cluster = await consumer._client.fetch_all_metadata()  # no public equivalent
    partitions: set[int] | None = cluster.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic!r} does not exist")
    return partitions


def main(argv: list[str] | None = None) -> int:
    import argparse
    import asyncio
    import os

    parser = argparse.ArgumentParser(
        prog="python -m carebridge_shared.dlq",
        description="Republish dead letters to the topic they came from.",
    )
    parser.add_argument("dlq_topic", help="e.g. carebridge.booking.appointments.dlq")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument(
        "--group", required=True, help="the consumer group whose letters to redrive"
    )
    parser.add_argument("--limit", type=int, default=10_000)
    args = parser.parse_args(argv)
    if not args.bootstrap:
        parser.error("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap")
    if not args.dlq_topic.endswith(".dlq"):
        parser.error(f"{args.dlq_topic!r} is not a dead-letter topic (they end in .dlq)")
    result = asyncio.run(
        redrive(args.bootstrap, args.dlq_topic, failed_group=args.group, limit=args.limit)
    )
    print(
        f"redriven {result.redriven}; left {result.invalid} that do not parse "
        f"(fix the producer, they cannot succeed); {result.other_groups} belong to other groups"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
