"""`carebridge replay`: replay a window of events into a fresh consumer group, or copy it into
a topic.

Into a group (`--group G`): G's committed offsets are set to the first record at or after
`--from`, so a service started with CAREBRIDGE_CONSUMER_GROUP=G consumes from there to the
live end. A group with members is never moved. An existing group is moved only with
`--reset-existing`, and only backwards (re-reading); moving it forward would skip records it
never processed. `--to`, `--type` and `--rate` cannot be expressed as offsets, so they are
refused here.

Into a topic (`--to-topic X`): the records of the window [--from, --to) are copied to X, key
and headers kept, plus `x-replayed-by: carebridge-replay:<user>:<replay id>` and
`x-replayed-from: <topic>:<partition>:<offset>`; `--type` filters, `--rate` limits. X must
exist and must not be an event or dead-letter topic of the registry (services consume those:
to have a service see events again, replay into a group).

Both first print the plan per partition; `--dry-run` stops there, and nothing moves without a
confirmation (`--yes` for scripts).
"""

from __future__ import annotations

import asyncio
import getpass
import re
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord
from rich.table import Table

from carebridge_contracts import all_topics, all_topics_with_dlq, entries, type_from_headers
from carebridge_ops import kafkaio, services
from carebridge_ops.console import (
    Bootstrap,
    OpsError,
    bootstrap_servers,
    confirm,
    fail,
    out,
    progress,
    quiet_logs,
    run,
)
from carebridge_ops.hints import carebridge
from carebridge_ops.timespec import parse_time
from carebridge_shared.kafka import make_producer

REPLAYED_BY = "x-replayed-by"
REPLAYED_FROM = "x-replayed-from"
Header = tuple[str, bytes]
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/s)?$")


@dataclass(frozen=True)
class PartitionWindow:
    partition: TopicPartition
    start: int
    end: int
    committed: int | None = None  # the group's offset before the replay (group mode)

    @property
    def count(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(frozen=True)
class ReplayRequest:
    """The command line, checked before anything connects."""

    start: datetime
    end: datetime | None
    group: str | None
    to_topic: str | None
    types: frozenset[str]
    topics: tuple[str, ...]
    rate: float | None
    reset_existing: bool

    @classmethod
    def check(
        cls,
        *,
        group: str | None,
        to_topic: str | None,
        start: str,
        end: str | None,
        types: Sequence[str],
        topics: Sequence[str],
        service: str | None,
        rate: str | None,
        reset_existing: bool,
    ) -> ReplayRequest:
        _check_destination(group, to_topic, end=end, types=types, rate=rate,
                           reset_existing=reset_existing)  # fmt: skip
        _check_types(types)
        begin = parse_time(start)
        finish = parse_time(end) if end is not None else None
        if finish is not None and finish <= begin:
            raise OpsError(f"--to ({finish.isoformat()}) is not after --from ({begin.isoformat()})")
        chosen = _source_topics(topics, service, types)
        if to_topic is not None and (to_topic in all_topics_with_dlq() or to_topic in chosen):
            raise OpsError(
                f"--to-topic {to_topic} is an event or dead-letter topic that services consume; "
                "copies go to a topic of their own (to have a service see events again, "
                "replay into a consumer group with --group)."
            )
        return cls(
            start=begin,
            end=finish,
            group=group,
            to_topic=to_topic,
            types=frozenset(types),
            topics=tuple(sorted(set(chosen))),
            rate=_rate(rate),
            reset_existing=reset_existing,
        )


def _check_destination(
    group: str | None,
    to_topic: str | None,
    *,
    end: str | None,
    types: Sequence[str],
    rate: str | None,
    reset_existing: bool,
) -> None:
    """Exactly one of --group and --to-topic, and only the options that one can honour."""
    if (group is None) == (to_topic is None):
        raise OpsError(
            "say where the window goes: --group G (a fresh consumer group a service then "
            "consumes it with) or --to-topic X (a copy of the records), not both."
        )
    if group is None:
        if reset_existing:
            raise OpsError("--reset-existing works only with --group.")
        return
    refused = {
        "--to": (end, "a consumer group cannot be told where to stop: its service "
                 "consumes to the live end"),
        "--type": (types, "offsets cannot skip event types: the service's handlers "
                   "decide what it applies"),
        "--rate": (rate, "the service consumes at its own pace"),
    }  # fmt: skip
    for option, (value, why) in refused.items():
        if value:
            raise OpsError(
                f"{option} works only with --to-topic ({why}). To replay a closed or "
                "filtered window, copy it into a topic with --to-topic."
            )


def _check_types(types: Sequence[str]) -> None:
    known_types = {e.event_type for e in entries()}
    unknown = sorted(set(types) - known_types)
    if unknown:
        raise OpsError(
            f"unknown event type(s) {', '.join(unknown)}: one of {', '.join(sorted(known_types))}"
        )


def _source_topics(topics: Sequence[str], service: str | None, types: Sequence[str]) -> list[str]:
    """--topic and the topics --service consumes; else the topics of the --type events; else
    every event topic."""
    chosen = list(topics)
    if service is not None:
        chosen += services.load(service).consumed_topics()
    if not chosen and types:
        chosen = [str(e.topic) for e in entries() if e.event_type in types]
    if not chosen:
        chosen = [str(t) for t in all_topics()]
    return chosen


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    match = _RATE.match(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise OpsError(f"--rate {value!r}: give messages per second, e.g. 100 or 100/s")
    return float(match.group(1))


def plan_table(title: str, windows: Sequence[PartitionWindow], *, group_mode: bool) -> Table:
    table = Table(title=title)
    for column in ("topic", "partition", "start offset", "end offset", "messages"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    if group_mode:
        table.add_column("committed now", justify="right")
    for w in windows:
        row = [w.partition.topic, str(w.partition.partition), str(w.start), str(w.end)]
        row.append(str(w.count))
        if group_mode:
            row.append("-" if w.committed is None else str(w.committed))
        table.add_row(*row)
    table.add_section()
    table.add_row("total", "", "", "", str(sum(w.count for w in windows)))
    return table


async def plan_windows(
    bootstrap: str, request: ReplayRequest, committed: dict[TopicPartition, int]
) -> list[PartitionWindow]:
    async with kafkaio.admin_client(bootstrap) as admin:
        partitions = await kafkaio.partitions_of(admin, request.topics)
    async with kafkaio.reader(bootstrap) as consumer:
        starts = await kafkaio.offsets_at(consumer, partitions, request.start)
        if request.end is not None:
            ends = await kafkaio.offsets_at(consumer, partitions, request.end)
        else:
            ends = await kafkaio.ends(consumer, partitions)
    return [
        PartitionWindow(tp, starts[tp], max(ends[tp], starts[tp]), committed.get(tp))
        for tp in partitions
    ]


async def replay_into_group(
    bootstrap: str, request: ReplayRequest, *, dry_run: bool, yes: bool
) -> None:
    group = request.group
    assert group is not None
    async with kafkaio.admin_client(bootstrap) as admin:
        state = await kafkaio.describe_group(admin, group)
    kafkaio.refuse_live_group(state, "replaying into it")
    if state.exists and not request.reset_existing:
        raise OpsError(
            f"group {group!r} already exists ({state.state}, offsets on "
            f"{len(state.committed)} partition(s)). A replay starts a fresh group: pick a new "
            "name, or pass --reset-existing to rewind this one (backwards only)."
        )
    windows = await plan_windows(bootstrap, request, state.committed)
    out().print(
        plan_table(
            f"replay into group {group} from {request.start.isoformat()}"
            " (end: the live end; the service consumes on)",
            windows,
            group_mode=True,
        )
    )
    forward = [w for w in windows if w.committed is not None and w.start > w.committed]
    if forward:
        names = ", ".join(f"{w.partition.topic}:{w.partition.partition}" for w in forward)
        raise OpsError(
            f"moving group {group!r} to --from would skip records it never processed on "
            f"{names}. A replay only rewinds; choose an earlier --from or a new group."
        )
    if dry_run:
        out().print("dry run: nothing was changed.")
        return
    confirm(f"Set the committed offsets of group {group!r} to the start of this window?", yes=yes)
    async with kafkaio.admin_client(bootstrap) as admin:  # members may have joined meanwhile
        kafkaio.refuse_live_group(await kafkaio.describe_group(admin, group), "replaying into it")
    await kafkaio.commit_offsets(bootstrap, group, {w.partition: w.start for w in windows})
    out().print(
        f"group {group} starts at {request.start.isoformat()}. Start the service with "
        f"CAREBRIDGE_CONSUMER_GROUP={group}: it applies each event once per database (its "
        "inbox), so point it at a fresh schema to rebuild, or use "
        f"`{carebridge(f'projection rebuild <service> --group {group}')}`."
    )


async def copy_to_topic(
    bootstrap: str,
    request: ReplayRequest,
    *,
    dry_run: bool,
    yes: bool,
    create_topic: bool = False,
) -> tuple[str, int, int]:
    """Copy the window; returns (replay id, copied, skipped by --type)."""
    target = request.to_topic
    assert target is not None
    windows = await plan_windows(bootstrap, request, {})
    async with kafkaio.admin_client(bootstrap) as admin:
        if target not in await admin.list_topics():
            if not create_topic:
                raise OpsError(
                    f"--to-topic {target} does not exist: add --create-topic (as many partitions "
                    "as the source topics, the cluster's default retention), or create it first "
                    "with the partitions and retention the copy needs."
                )
            if not dry_run:
                await _create_copy_topic(admin, target, windows)
    until = f" to {request.end.isoformat()}" if request.end else " to the current end"
    kinds = f", only {', '.join(sorted(request.types))}" if request.types else ""
    out().print(
        plan_table(
            f"copy into {target} from {request.start.isoformat()}{until}{kinds}",
            windows,
            group_mode=False,
        )
    )
    if request.types:
        out().print("messages: records in the window; --type filters them while copying.")
    if dry_run:
        out().print("dry run: nothing was copied.")
        return "", 0, 0
    confirm(f"Copy these records into {target}?", yes=yes)
    replay_id = uuid.uuid4().hex[:12]
    replayed_by = f"carebridge-replay:{_operator()}:{replay_id}".encode()
    producer = make_producer(
        bootstrap, client_id=f"carebridge-replay-{replay_id}", security=kafkaio.security()
    )
    await producer.start()
    try:
        async with kafkaio.reader(bootstrap) as consumer:
            copied, skipped = await _copy(consumer, producer, windows, request, replayed_by)
    finally:
        await producer.stop()
    return replay_id, copied, skipped


async def _create_copy_topic(
    admin: AIOKafkaAdminClient, target: str, windows: Sequence[PartitionWindow]
) -> None:
    """`target` with as many partitions as the busiest source topic, replicated like the
    services' topics at most (3) and at least once per broker available."""
    per_topic = Counter(w.partition.topic for w in windows)
    partitions = max(per_topic.values(), default=1)
    brokers = len((await admin.describe_cluster())["brokers"])
    replicas = max(1, min(3, brokers))
    await admin.create_topics([NewTopic(target, partitions, replicas)])
    out().print(f"created {target}: {partitions} partition(s), replication factor {replicas}")


async def _copy(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    windows: Sequence[PartitionWindow],
    request: ReplayRequest,
    replayed_by: bytes,
) -> tuple[int, int]:
    """Copy each partition's window in order; returns (copied, skipped by --type)."""
    assert request.to_topic is not None
    todo = {w.partition: w for w in windows if w.count}
    consumer.assign(list(todo))
    for tp, window in todo.items():
        consumer.seek(tp, window.start)
    copied = skipped = 0
    started = time.monotonic()
    with progress() as bar:
        task = bar.add_task("copying", total=sum(w.count for w in windows))
        while todo:
            sends = []
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=500)).items():
                end = todo[tp].end if tp in todo else -1
                for record in (r for r in records if r.offset < end):
                    bar.advance(task)
                    routed = type_from_headers(record.headers or ())
                    if request.types and (routed is None or routed[0] not in request.types):
                        skipped += 1
                        continue
                    if request.rate is not None:
                        await _pace(started, copied, request.rate)
                    headers = _copy_headers(record, replayed_by)
                    sends.append(
                        await producer.send(
                            request.to_topic, value=record.value, key=record.key, headers=headers
                        )
                    )
                    copied += 1
            await asyncio.gather(*sends)  # acknowledged by Kafka before going on
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp].end:
                    del todo[tp]
    return copied, skipped


def _copy_headers(record: ConsumerRecord[bytes, bytes], replayed_by: bytes) -> list[Header]:
    """The record's own headers, plus who replayed it and where it came from."""
    kept = [(k, v) for k, v in (record.headers or ()) if k not in (REPLAYED_BY, REPLAYED_FROM)]
    origin = f"{record.topic}:{record.partition}:{record.offset}".encode()
    return [*kept, (REPLAYED_BY, replayed_by), (REPLAYED_FROM, origin)]


async def _pace(started: float, sent: int, rate: float) -> None:
    """Hold the average at `rate` messages per second."""
    wait = sent / rate - (time.monotonic() - started)
    if wait > 0:
        await asyncio.sleep(wait)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def replay_command(
    start: Annotated[
        str,
        typer.Option("--from", help="Start of the window: ISO-8601 or relative (-15m, -2h)."),
    ],
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Fresh consumer group to replay the window into."),
    ] = None,
    to_topic: Annotated[
        str | None,
        typer.Option("--to-topic", help="Copy the window into this (existing) topic instead."),
    ] = None,
    create_topic: Annotated[
        bool,
        typer.Option(
            "--create-topic",
            help="Create the --to-topic when it does not exist (source topics' partitions).",
        ),
    ] = False,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End of the window, exclusive (--to-topic only)."),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Copy only this event type (repeatable; --to-topic only)."),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic", "-t", help="Source topic (repeatable; default: every event topic)."
        ),
    ] = None,
    service: Annotated[
        str | None,
        typer.Option("--service", help="Source topics: the ones this service consumes."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="At most this many messages per second (--to-topic only)."),
    ] = None,
    reset_existing: Annotated[
        bool,
        typer.Option(
            "--reset-existing",
            help="Allow rewinding a group that already has offsets (never one with members).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan per partition; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bootstrap: Bootstrap = None,
) -> None:
    """Replay a window of events into a fresh consumer group, or copy it into a topic.

    The plan (start and end offset and message count per partition) is printed before anything
    moves. A group with members is refused, as kafka-consumer-groups.sh --reset-offsets does.
    """
    quiet_logs()
    try:
        servers = bootstrap_servers(bootstrap)
        request = ReplayRequest.check(
            group=group,
            to_topic=to_topic,
            start=start,
            end=end,
            types=event_type or [],
            topics=topic or [],
            service=service,
            rate=rate,
            reset_existing=reset_existing,
        )
    except (OpsError, ValueError) as exc:
        fail(str(exc))
    if request.group is not None:
        run(replay_into_group(servers, request, dry_run=dry_run, yes=yes))
        return
    replay_id, copied, skipped = run(
        copy_to_topic(servers, request, dry_run=dry_run, yes=yes, create_topic=create_topic)
    )
    if replay_id:
        filtered = f"; {skipped} of other types skipped" if request.types else ""
        out().print(
            f"copied {copied} record(s) into {request.to_topic}{filtered}. Each carries "
            f"{REPLAYED_BY}: carebridge-replay:{_operator()}:{replay_id}."
        )
