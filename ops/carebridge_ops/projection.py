"""`carebridge projection rebuild SERVICE`: rebuild a service's event-derived state from the
topics into a scratch schema and compare it with the live one.

The scratch schema (`<service>_rebuild_<id>`, same database) gets the service's own migrations
and the API-owned tables its handlers read (`PROJECTION.copied`, contact details masked). Then
the service's own handlers (`handlers.subscriptions`) apply the window's records through its own
consumer runtime, fed by hand: no group is joined, no relay and no background task runs, so
nothing is published and no message is sent; a record that would be dead-lettered is counted
instead. Handlers see the record's Kafka time as "now", so time-dependent decisions (which
reminders are still due) come out as they did live. Last, `PROJECTION.compared` tables are
compared with the live schema; the scratch schema is dropped unless --keep.
"""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import typer
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from rich.table import Table

from carebridge_ops import kafkaio, services
from carebridge_ops.console import (
    EXIT_DIFFERENT,
    Bootstrap,
    DatabaseUrl,
    OpsError,
    bootstrap_servers,
    database_url,
    fail,
    out,
    progress,
    quiet_logs,
    run,
)
from carebridge_ops.replay import PartitionWindow, plan_table
from carebridge_ops.timespec import from_millis, parse_time
from carebridge_shared.consumer import ConsumerRuntime, RetryPolicy
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.projection import (
    ProjectionDifference,
    compare,
    copy_inputs,
)

app = typer.Typer(
    help="Projections: rebuild a service's event-derived state and compare it with the live one.",
    no_args_is_help=True,
)


@app.callback()
def _callback() -> None:
    quiet_logs()


class ReplayClock:
    """The clock handlers see during a rebuild: the Kafka time of the record being applied."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    error: str


class RebuildRuntime(ConsumerRuntime):
    """The service's consumer runtime, never started: records are fed to `process` by hand.
    What it would dead-letter is kept here instead of being published."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dead_letters: list[DeadLetter] = []

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: str, attempts: int
    ) -> None:
        self.dead_letters.append(
            DeadLetter(record.topic, record.partition, record.offset, error.split(":", 1)[0])
        )


@dataclass(frozen=True)
class RebuildRequest:
    service: str
    start: datetime | None = None
    group: str | None = None  # start at its committed offsets, commit progress to it
    until_group: str | None = None  # stop at its committed offsets (default: the end now)
    keep: bool = False


@dataclass
class RebuildResult:
    schema: str
    windows: list[PartitionWindow]
    applied: int = 0
    copied: dict[str, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    difference: ProjectionDifference | None = None
    live_group: str = ""
    live_behind: int = 0  # records in the window the live group has not committed yet


def scratch_schema(service: str) -> str:
    return f"{service}_rebuild_{uuid.uuid4().hex[:8]}"


async def plan(
    bootstrap: str, request: RebuildRequest, topics: Sequence[str]
) -> list[PartitionWindow]:
    """Per partition of the service's topics: where the rebuild starts and stops."""
    async with kafkaio.admin_client(bootstrap) as admin:
        partitions = await kafkaio.partitions_of(admin, topics)
        group = await _group_offsets(admin, request.group, partitions, start=True)
        until = await _group_offsets(admin, request.until_group, partitions, start=False)
    async with kafkaio.reader(bootstrap) as consumer:
        if group is not None:
            starts = group
        elif request.start is not None:
            starts = await kafkaio.offsets_at(consumer, partitions, request.start)
        else:
            starts = await kafkaio.beginnings(consumer, partitions)
        ends = until if until is not None else await kafkaio.ends(consumer, partitions)
    return [
        PartitionWindow(tp, starts[tp], max(ends.get(tp, starts[tp]), starts[tp]))
        for tp in partitions
    ]


async def _group_offsets(
    admin: Any, group: str | None, partitions: list[TopicPartition], *, start: bool
) -> dict[TopicPartition, int] | None:
    if group is None:
        return None
    state = await kafkaio.describe_group(admin, group)
    if start:
        kafkaio.refuse_live_group(state, "rebuilding with it")
        missing = [tp for tp in partitions if tp not in state.committed]
        if missing:
            names = ", ".join(f"{tp.topic}:{tp.partition}" for tp in missing)
            raise OpsError(
                f"group {group!r} has no committed offset on {names}. Prepare it with "
                f"`carebridge replay --group {group} --from TIME --service <service>` first."
            )
    # Until a live group: a partition it never committed on is one it consumed nothing from.
    return {tp: o for tp, o in state.committed.items() if tp in partitions}


async def rebuild(
    bootstrap: str,
    dsn: str,
    request: RebuildRequest,
    *,
    on_plan: Callable[[RebuildResult], None] = lambda _r: None,
) -> RebuildResult:
    code = services.load(request.service)
    if code.projection is None:
        raise OpsError(
            f"{code.name} declares no PROJECTION (carebridge_{code.name}/store.py): "
            "nothing is known to be derived from events, so there is nothing to rebuild."
        )
    topics = code.consumed_topics()
    if not topics:
        raise OpsError(f"{code.name} consumes no events: nothing to rebuild.")
    result = RebuildResult(scratch_schema(code.name), await plan(bootstrap, request, topics))
    on_plan(result)
    settings = code.settings(DATABASE_URL=dsn, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    result.live_group = settings.consumer_group or code.name
    pool = await create_pool(dsn, result.schema, max_size=2)
    try:
        await migrate(pool, result.schema, code.migrations)
        async with pool.acquire() as conn:
            result.copied = await copy_inputs(
                conn, code.projection, live_schema=code.name, scratch_schema=result.schema
            )
        clock = ReplayClock()
        runtime = RebuildRuntime(
            bootstrap_servers=bootstrap,
            service=code.context(settings, pool, result.schema, clock),
            subscriptions=code.subscriptions,
            group_id=request.group or result.schema,
            producer_factory=_no_producer,
            retry=RetryPolicy(
                settings.consumer_max_attempts,
                settings.consumer_backoff_initial_ms / 1000,
                settings.consumer_backoff_max_ms / 1000,
            ),
        )
        result.applied = await _feed(bootstrap, request.group, result.windows, runtime, clock)
        result.dead_letters = runtime.dead_letters
        async with pool.acquire() as conn:
            result.difference = await compare(
                conn, code.projection, live_schema=code.name, rebuilt_schema=result.schema
            )
        if request.until_group is None and not result.difference.equal:
            result.live_behind = await _live_behind(bootstrap, result.live_group, result.windows)
    finally:
        if not request.keep:
            await _drop(pool, result.schema)
        await pool.close()
    return result


async def _feed(
    bootstrap: str,
    group: str | None,
    windows: list[PartitionWindow],
    runtime: RebuildRuntime,
    clock: ReplayClock,
) -> int:
    """Apply every record of the windows, each partition in order, partitions merged by time
    (as live consumption roughly interleaves them). With `group`, progress is committed."""
    todo = {w.partition: w for w in windows if w.count}
    applied = 0
    async with kafkaio.reader(bootstrap, group_id=group) as consumer:
        consumer.assign(list(todo))
        for tp, window in todo.items():
            consumer.seek(tp, window.start)
        with progress() as bar:
            task = bar.add_task("replaying", total=sum(w.count for w in windows))
            while todo:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                lanes = [
                    [r for r in records if r.offset < todo[tp].end]
                    for tp, records in batches.items()
                    if tp in todo
                ]
                done: dict[TopicPartition, int] = {}
                for record in heapq.merge(*lanes, key=lambda r: r.timestamp):
                    clock.moment = from_millis(record.timestamp)
                    await runtime.process(record)
                    done[TopicPartition(record.topic, record.partition)] = record.offset + 1
                    applied += 1
                    bar.advance(task)
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp].end:
                        done[tp] = todo.pop(tp).end  # transaction markers may follow the last
                if group is not None and done:
                    await consumer.commit(done)
    return applied


async def _live_behind(bootstrap: str, group: str, windows: list[PartitionWindow]) -> int:
    async with kafkaio.admin_client(bootstrap) as admin:
        committed = (await kafkaio.describe_group(admin, group)).committed
    return sum(max(w.end - committed[w.partition], 0) for w in windows if w.partition in committed)


async def _drop(pool: asyncpg.Pool, schema: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _no_producer() -> Any:
    raise RuntimeError("a rebuild never produces")


def difference_table(difference: ProjectionDifference) -> Table:
    table = Table(title="rebuilt vs live")
    for column in ("table", "live rows", "rebuilt rows", "missing", "extra", "differing", ""):
        table.add_column(column, justify="left" if column in ("table", "") else "right")
    for t in difference.tables:
        verdict = "[green]equal[/]" if t.equal else "[bold red]different[/]"
        numbers = (t.live_rows, t.rebuilt_rows, t.missing, t.extra, t.differing)
        table.add_row(t.table, *map(str, numbers), verdict)
    return table


def difference_samples(difference: ProjectionDifference) -> list[str]:
    """A few rows of each difference: missing (live only), extra (rebuilt only), differing."""
    lines: list[str] = []
    for t in difference.tables:
        for sample in t.samples:
            key = ", ".join(f"{k}={v}" for k, v in sample.key.items())
            if sample.rebuilt is None:
                lines.append(f"{t.table}: missing from the rebuild: {key}")
            elif sample.live is None:
                lines.append(f"{t.table}: extra in the rebuild: {key}")
            else:
                changes = "; ".join(
                    f"{c} live={sample.live[c]!r} rebuilt={sample.rebuilt[c]!r}"
                    for c in sample.live
                )
                lines.append(f"{t.table}: differs at {key}: {changes}")
    return lines


def report(result: RebuildResult, request: RebuildRequest) -> bool:
    """Print the outcome; True when the projections are equal."""
    console = out()
    difference = result.difference
    assert difference is not None
    copied = ", ".join(f"{table} {rows}" for table, rows in result.copied.items())
    console.print(
        f"replayed {result.applied} record(s) into {result.schema}"
        + (f" (copied from live first: {copied})" if copied else "")
    )
    if result.dead_letters:
        kinds = Counter(letter.error for letter in result.dead_letters)
        console.print(
            f"[yellow]{len(result.dead_letters)} record(s) would have been dead-lettered "
            f"({', '.join(f'{k} {n}' for k, n in kinds.most_common())}); nothing was "
            "published. The live service parked them too, so they are not in its state.[/]"
        )
    console.print(difference_table(difference))
    for line in difference_samples(difference):
        console.print(f"  {line}", markup=False)
    if result.live_behind:
        console.print(
            f"[yellow]the live group {result.live_group} has not yet committed "
            f"{result.live_behind} record(s) of this window: differences may be its lag. Run "
            f"again when it caught up, or stop at its offsets with --until-group "
            f"{result.live_group}.[/]"
        )
    if request.keep:
        console.print(f'kept schema {result.schema} (DROP SCHEMA "{result.schema}" CASCADE)')
    console.print(
        "[bold green]EQUAL[/]: the rebuilt projection matches the live state"
        if difference.equal
        else "[bold red]NOT EQUAL[/]: the rebuilt projection differs from the live state"
    )
    return difference.equal


@app.command("rebuild")
def rebuild_command(
    service: Annotated[str, typer.Argument(help="intake, booking, referral or notification.")],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Replay records from this time (ISO-8601 or -15m, -2h; default: the beginning).",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Start at this fresh group's offsets (set by `carebridge replay --group`) and "
            "commit progress to it.",
        ),
    ] = None,
    until_group: Annotated[
        str | None,
        typer.Option(
            "--until-group",
            help="Stop at this group's committed offsets (e.g. the live service's group) "
            "instead of the end offsets seen at the start.",
        ),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch schema for a closer look.")
    ] = False,
    bootstrap: Bootstrap = None,
    dsn: DatabaseUrl = None,
) -> None:
    """Rebuild SERVICE's event-derived state from the topics into a scratch schema, using its
    own migrations and handlers (no relay, no background tasks: nothing is published or sent),
    then compare it with the live schema. Exit status 0 when equal, 1 when not."""
    try:
        servers, url = bootstrap_servers(bootstrap), database_url(dsn)
        if start is not None and group is not None:
            raise OpsError("--from and --group both say where to start: give one of them")
        request = RebuildRequest(
            service=service,
            start=parse_time(start) if start is not None else None,
            group=group,
            until_group=until_group,
            keep=keep,
        )
    except (OpsError, ValueError) as exc:
        fail(str(exc))

    def show_plan(result: RebuildResult) -> None:
        title = f"rebuild {service} into schema {result.schema}"
        out().print(plan_table(title, result.windows, group_mode=False))

    result = run(rebuild(servers, url, request, on_plan=show_plan))
    if not report(result, request):
        raise typer.Exit(EXIT_DIFFERENT)
