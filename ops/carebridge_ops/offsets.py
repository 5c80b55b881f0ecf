"""`carebridge offsets export|import`: a consumer group's committed offsets as CSV
(group,topic,partition,offset), e.g. to keep them before a replay and put them back after."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import TopicPartition
from rich.table import Table

from carebridge_ops import kafkaio
from carebridge_ops.console import (
    Bootstrap,
    OpsError,
    bootstrap_servers,
    confirm,
    err,
    fail,
    out,
    quiet_logs,
    run,
)

app = typer.Typer(
    help="Consumer group offsets as CSV: export them, import them.", no_args_is_help=True
)

HEADER = ("group", "topic", "partition", "offset")


@app.callback()
def _callback() -> None:
    quiet_logs()


@dataclass(frozen=True, order=True)
class OffsetRow:
    group: str
    topic: str
    partition: int
    offset: int

    @property
    def partition_id(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


def to_csv(rows: Iterable[OffsetRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for row in sorted(rows):
        writer.writerow((row.group, row.topic, row.partition, row.offset))
    return buffer.getvalue()


def from_csv(text: str, *, source: str = "the file") -> list[OffsetRow]:
    """Rows of an export; OpsError naming the line that is wrong."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise OpsError(f"{source} must start with the header line {','.join(HEADER)}")
    rows: list[OffsetRow] = []
    seen: set[tuple[str, int]] = set()
    for number, fields in enumerate(reader, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        try:
            group, topic, partition, offset = (f.strip() for f in fields)
            row = OffsetRow(group, topic, int(partition), int(offset))
        except ValueError:
            raise OpsError(
                f"{source}, line {number}: expected group,topic,partition,offset with whole "
                "numbers for partition and offset"
            ) from None
        if not row.group or not row.topic or row.partition < 0 or row.offset < 0:
            raise OpsError(f"{source}, line {number}: empty name or negative number")
        if (row.topic, row.partition) in seen:
            raise OpsError(f"{source}, line {number}: {row.topic}:{row.partition} appears twice")
        seen.add((row.topic, row.partition))
        rows.append(row)
    groups = {row.group for row in rows}
    if len(groups) > 1:
        raise OpsError(f"{source} holds offsets of several groups ({', '.join(sorted(groups))})")
    if not rows:
        raise OpsError(f"{source} holds no offsets")
    return rows


async def export_offsets(bootstrap: str, group: str) -> list[OffsetRow]:
    async with kafkaio.admin_client(bootstrap) as admin:
        state = await kafkaio.describe_group(admin, group)
    if not state.committed:
        raise OpsError(f"group {group!r} has no committed offsets (check the name)")
    return [OffsetRow(group, tp.topic, tp.partition, o) for tp, o in state.committed.items()]


async def import_offsets(bootstrap: str, group: str, rows: list[OffsetRow], *, yes: bool) -> None:
    async with kafkaio.admin_client(bootstrap) as admin:
        state = await kafkaio.describe_group(admin, group)
        kafkaio.refuse_live_group(state, "importing offsets into it")
        partitions = set(await kafkaio.partitions_of(admin, {r.topic for r in rows}))
    unknown = [r for r in rows if r.partition_id not in partitions]
    if unknown:
        names = ", ".join(f"{r.topic}:{r.partition}" for r in unknown)
        raise OpsError(f"partition(s) {names} do not exist on this cluster")
    wanted = [r.partition_id for r in rows]
    async with kafkaio.reader(bootstrap) as consumer:
        low = await kafkaio.beginnings(consumer, wanted)
        high = await kafkaio.ends(consumer, wanted)
    outside = [r for r in rows if not low[r.partition_id] <= r.offset <= high[r.partition_id]]
    if outside:
        names = ", ".join(
            f"{r.topic}:{r.partition} offset {r.offset} (valid {low[r.partition_id]}.."
            f"{high[r.partition_id]})"
            for r in outside
        )
        raise OpsError(f"offsets outside what the partitions hold: {names}")
    table = Table(title=f"offsets for group {group}")
    for column in ("topic", "partition", "committed now", "new offset"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for r in sorted(rows):
        now = state.committed.get(r.partition_id)
        table.add_row(r.topic, str(r.partition), "-" if now is None else str(now), str(r.offset))
    out().print(table)
    if rows[0].group != group:
        out().print(f"the file holds the offsets of group {rows[0].group}; they go to {group}.")
    confirm(f"Set these offsets for group {group!r}?", yes=yes)
    async with kafkaio.admin_client(bootstrap) as admin:  # members may have joined meanwhile
        kafkaio.refuse_live_group(await kafkaio.describe_group(admin, group), "importing")
    await kafkaio.commit_offsets(bootstrap, group, {r.partition_id: r.offset for r in rows})
    out().print(f"group {group}: {len(rows)} offset(s) set.")


GroupOption = Annotated[str, typer.Option("--group", "-g", help="The consumer group.")]


@app.command("export")
def export_command(
    group: GroupOption,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Write the group's committed offsets as CSV: group,topic,partition,offset."""
    try:
        servers = bootstrap_servers(bootstrap)
    except OpsError as exc:
        fail(str(exc))
    text = to_csv(run(export_offsets(servers, group)))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err().print(f"wrote {text.count(chr(10)) - 1} offset(s) of group {group} to {output}")


@app.command("import")
def import_command(
    group: GroupOption,
    file: Annotated[Path, typer.Argument(help="CSV written by `carebridge offsets export`.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bootstrap: Bootstrap = None,
) -> None:
    """Set the group's committed offsets from a CSV export. Refused while the group has
    members; partitions the file does not name keep their offsets."""
    try:
        servers = bootstrap_servers(bootstrap)
        if not file.is_file():
            raise OpsError(f"{file} is not a file")
        rows = from_csv(file.read_text(), source=str(file))
    except OpsError as exc:
        fail(str(exc))
    run(import_offsets(servers, group, rows, yes=yes))
