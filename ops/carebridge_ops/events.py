"""`carebridge events tail`: event streams as JSON lines, without joining a consumer group."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from carebridge_contracts import ContractError, Envelope, all_topics, parse, type_from_headers
from carebridge_ops import kafkaio
from carebridge_ops.console import (
    Bootstrap,
    OpsError,
    bootstrap_servers,
    fail,
    quiet_logs,
    run,
)
from carebridge_ops.timespec import from_millis, parse_time

app = typer.Typer(help="Event streams: read them as JSON lines.", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    quiet_logs()


@dataclass(frozen=True)
class TailFilter:
    types: frozenset[str] = frozenset()
    patient: str | None = None

    def accepts(self, record: ConsumerRecord[bytes, bytes], line: dict[str, Any]) -> bool:
        if self.patient is not None:
            key = (record.key or b"").decode(errors="replace")
            if self.patient not in (key, line.get("subject")):
                return False
        if self.types:
            routed = type_from_headers(record.headers or ())
            event_type = line.get("type") or (routed[0] if routed else None)
            if event_type not in self.types:
                return False
        return True


def record_line(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """Where the record is, then its envelope; for a record that does not parse, the reason
    instead (never its bytes: whatever broke the contract may be free text)."""
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": from_millis(record.timestamp).isoformat(),
        "key": None if record.key is None else record.key.decode(errors="replace"),
    }
    try:
        envelope = Envelope.from_bytes(record.value or b"")
    except (ContractError, ValidationError, ValueError) as exc:
        return {**line, "error": "not an event envelope", "reason": _reason(exc)}
    try:
        parse(envelope)
    except (ContractError, ValidationError, ValueError) as exc:
        fields = envelope.model_dump(mode="json", exclude={"data"})
        return {**line, **fields, "error": "payload does not parse", "reason": _reason(exc)}
    return {**line, **envelope.model_dump(mode="json")}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ContractError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__  # other messages may quote the input


async def tail(
    bootstrap: str,
    topics: Sequence[str],
    *,
    start: datetime | None,
    follow: bool,
    accept: TailFilter,
    emit: Callable[[dict[str, Any]], None],
) -> int:
    """Emit the accepted records of `topics` from `start` (default: the end when following,
    the beginning otherwise); without `follow`, stop at the end offsets seen at the start.
    Returns how many lines were emitted."""
    async with kafkaio.admin_client(bootstrap) as admin:
        partitions = await kafkaio.partitions_of(admin, topics)
    emitted = 0
    async with kafkaio.reader(bootstrap) as consumer:
        consumer.assign(partitions)
        if start is not None:
            positions = await kafkaio.offsets_at(consumer, partitions, start)
        elif follow:
            positions = await kafkaio.ends(consumer, partitions)
        else:
            positions = await kafkaio.beginnings(consumer, partitions)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        stop_at = None if follow else await kafkaio.ends(consumer, partitions)
        open_partitions: set[TopicPartition] = set(partitions)
        while follow or open_partitions:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    if stop_at is not None and record.offset >= stop_at[tp]:
                        break
                    line = record_line(record)
                    if accept.accepts(record, line):
                        emit(line)
                        emitted += 1
            if stop_at is not None:
                for tp in list(open_partitions):
                    # position, not the last record: transaction markers take offsets too
                    if await consumer.position(tp) >= stop_at[tp]:
                        open_partitions.discard(tp)
    return emitted


def _print_line(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


@app.command("tail")
def tail_command(
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic", "-t", help="Topic to read (repeatable; default: every event topic)."
        ),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this event type, e.g. AppointmentBooked (repeatable)."),
    ] = None,
    patient: Annotated[
        str | None, typer.Option("--patient", help="Only events about this patient id.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start at this time: ISO-8601 or relative (-15m, -2h, -1d). Default: the end "
            "with --follow, the beginning with --no-follow.",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow",
            help="Keep waiting for new events (Ctrl-C stops), or stop at the current end.",
        ),
    ] = True,
    bootstrap: Bootstrap = None,
) -> None:
    """Print events as JSON lines: envelope fields plus topic, partition, offset, timestamp and
    key. A record that does not parse is printed as a line with `error` and `reason`. Joins no
    consumer group and commits nothing, so it never disturbs the services."""
    try:
        servers = bootstrap_servers(bootstrap)
        begin = parse_time(start) if start is not None else None
    except (OpsError, ValueError) as exc:
        fail(str(exc))
    topics = topic or [str(t) for t in all_topics()]
    accept = TailFilter(frozenset(event_type or ()), patient)
    try:
        run(tail(servers, topics, start=begin, follow=follow, accept=accept, emit=_print_line))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BrokenPipeError:  # the reader went away (`| head`): done, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
