"""Kafka look-ups the ops commands share: partitions, offsets at a time, consumer groups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError

from carebridge_contracts import all_topics
from carebridge_ops.console import OpsError
from carebridge_ops.timespec import to_millis
from carebridge_shared.kafka import KafkaSecurity, KafkaSettingsError, bootstrap_list
from carebridge_shared.settings import ServiceSettings

UNKNOWN_TOPIC = 3


def security() -> KafkaSecurity:
    """The services' Kafka login (CAREBRIDGE_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*)."""
    try:
        return KafkaSecurity.from_settings(ServiceSettings())
    except KafkaSettingsError as exc:
        raise OpsError(str(exc)) from None


@asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_list(bootstrap),
        client_id="carebridge-ops",
        **security().client_options(),
    )
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def reader(bootstrap: str, *, group_id: str | None = None) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer that is only ever assigned partitions by hand: it never joins a group. With
    `group_id` it may commit that group's offsets (Kafka accepts such commits only while the
    group has no members). It reads committed records only: an aborted transaction (a failed
    dead-letter redrive) was never published."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_list(bootstrap),
        client_id="carebridge-ops",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **security().client_options(),
    )
    await consumer.start()
    # Let the consumer's own tasks begin: aiokafka 0.14 cannot stop one that never ran
    # (stop() re-raises its CancelledError).
    await asyncio.sleep(0)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics, sorted; OpsError naming the topics that do not exist."""
    wanted = sorted(set(topics))
    found: list[TopicPartition] = []
    missing: list[str] = []
    for described in await admin.describe_topics(wanted):
        if described["error_code"] == UNKNOWN_TOPIC or not described["partitions"]:
            missing.append(described["topic"])
            continue
        found += [
            TopicPartition(described["topic"], p["partition"]) for p in described["partitions"]
        ]
    if missing:
        events = ", ".join(str(t) for t in all_topics())
        raise OpsError(
            f"topic(s) {', '.join(sorted(missing))} do not exist on this cluster; check the "
            f"name (the event topics: {events}) or --bootstrap."
        )
    return sorted(found)


async def offsets_at(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], moment: datetime
) -> dict[TopicPartition, int]:
    """Per partition, the first offset whose record time is at or after `moment`; the end offset
    where no record is that recent."""
    if not partitions:
        return {}
    found = await consumer.offsets_for_times({tp: to_millis(moment) for tp in partitions})
    ends = await consumer.end_offsets(partitions)
    return {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}


async def beginnings(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    return dict(await consumer.beginning_offsets(partitions)) if partitions else {}


async def ends(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    return dict(await consumer.end_offsets(partitions)) if partitions else {}


@dataclass(frozen=True)
class Member:
    client_id: str
    host: str


@dataclass(frozen=True)
class GroupState:
    """A consumer group as the broker describes it, with its committed offsets."""

    group: str
    state: str  # Empty, Stable, PreparingRebalance, CompletingRebalance, Dead (unknown)
    members: tuple[Member, ...] = ()
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.state != "Dead" or bool(self.committed)


async def describe_group(admin: AIOKafkaAdminClient, group: str) -> GroupState:
    # One group per request: aiokafka 0.14 misreads a response that describes several.
    [response] = await admin.describe_consumer_groups([group])
    [described] = response.to_object()["groups"]
    if described["error_code"]:
        raise OpsError(
            f"could not describe group {group!r} (Kafka error {described['error_code']})"
        )
    offsets = await admin.list_consumer_group_offsets(group)
    return GroupState(
        group=group,
        state=described["state"],
        members=tuple(Member(m["client_id"], m["client_host"]) for m in described["members"]),
        committed={tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0},
    )


def refuse_live_group(state: GroupState, action: str) -> None:
    """Like kafka-consumer-groups.sh --reset-offsets: never move a group that has members."""
    if not state.members:
        return
    who = ", ".join(sorted({f"{m.client_id}@{m.host}" for m in state.members}))
    raise OpsError(
        f"group {state.group!r} has {len(state.members)} active member(s) ({who}); {action} "
        "would pull offsets from under running consumers. Stop the processes that use this "
        f"group (CAREBRIDGE_CONSUMER_GROUP={state.group}) and run the command again, or use a "
        "new group name."
    )


async def commit_offsets(bootstrap: str, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Set `group`'s committed offsets without joining it (refused by Kafka if it has members)."""
    if not offsets:
        return
    async with reader(bootstrap, group_id=group) as consumer:
        consumer.assign(list(offsets))
        try:
            await consumer.commit(dict(offsets))
        except (CommitFailedError, KafkaError) as exc:
            raise OpsError(
                f"Kafka refused to set the offsets of group {group!r} ({type(exc).__name__}): "
                "it probably gained members meanwhile. Stop them and run the command again."
            ) from exc
