"""`carebridge dlq`: list, show and redrive dead letters, and read the redrive audit."""

from __future__ import annotations

import getpass
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table

from carebridge_ops import console
from carebridge_ops import dead_letters as dlq
from carebridge_ops.console import Bootstrap, OpsError
from carebridge_ops.dead_letters import DeadLetter, DlqError, LetterId, RedriveAudit, Selection
from carebridge_ops.hints import carebridge
from carebridge_ops.kafkaio import security
from carebridge_shared.kafka import KafkaSecurity
from carebridge_shared.settings import ServiceSettings

app = typer.Typer(
    help="Dead letters: list them, show one, redrive them to their topic, read the audit.",
    no_args_is_help=True,
)

T = TypeVar("T")


@app.callback()
def _callback() -> None:
    console.quiet_logs()
    # A fenced redrive leaves aiokafka futures nobody retrieves; asyncio would log each one.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


TopicOption = Annotated[
    str | None,
    typer.Option(
        "--topic", "-t", help="An event topic of the registry or its .dlq (default: all of them)."
    ),
]
GroupOption = Annotated[
    str | None, typer.Option("--group", "-g", help="Only letters this consumer group parked.")
]
IdOption = Annotated[
    str | None,
    typer.Option("--id", help="A letter (<dlq topic>:<partition>:<offset>) or an event_id."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]

_SHOWN_ROWS = 20  # rows of a redrive plan printed before "... and N more"


@dataclass(frozen=True)
class Kafka:
    servers: str
    security: KafkaSecurity
    replication_factor: int  # of the audit topic, when a redrive creates it


def _kafka(bootstrap: str | None) -> Kafka:
    """The brokers, and the services' Kafka login (CAREBRIDGE_KAFKA_*)."""
    try:
        servers = console.bootstrap_servers(bootstrap)
        return Kafka(servers, security(), ServiceSettings().kafka_replication_factor)
    except (OpsError, ValidationError) as exc:
        console.fail(str(exc))


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`console.run`, with the library's expected errors as one red line too."""

    async def translated() -> T:
        try:
            return await work()
        except DlqError as exc:
            raise OpsError(str(exc)) from None

    return console.run(translated())


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (on a terminal); yields the (done, total) callback."""
    bar = console.progress()
    bar.disable = not bar.console.is_terminal  # piped output gets no bar lines
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _topics(topic: str | None) -> tuple[str, ...]:
    try:
        return (dlq.resolve_dlq_topic(topic),) if topic else tuple(dlq.dead_letter_topics())
    except DlqError as exc:
        console.fail(str(exc))


def _selection(topic: str | None, group: str | None, ident: str | None) -> Selection:
    topics = _topics(topic)
    if ident is None:
        return Selection(topics, group=group)
    letter = LetterId.parse(ident)
    if letter is not None:
        if letter.topic not in topics:
            console.fail(f"{ident} is not on {topics[0]} (--topic): drop --topic or fix the id")
        return Selection((letter.topic,), group=group, letter=letter)
    try:
        return Selection(topics, group=group, event_id=uuid.UUID(ident))
    except ValueError:
        console.fail(
            f"{ident!r} is neither a letter id (<dlq topic>:<partition>:<offset>, as "
            f"`{carebridge('dlq list')}` prints it) nor an event_id (a UUID)"
        )


async def _letters_and_ledger(
    kafka: Kafka, selection: Selection, progress: Callable[[int, int], None]
) -> tuple[list[DeadLetter], dict[str, RedriveAudit]]:
    if selection.letter is not None:
        one = await dlq.read_letter(kafka.servers, selection.letter, security=kafka.security)
        letters = [one] if one is not None else []
    else:
        letters = await dlq.read_dead_letters(
            kafka.servers, selection.dlq_topics, security=kafka.security, progress=progress
        )
    audits = await dlq.read_audit(kafka.servers, security=kafka.security)
    ledger = {audit.letter: audit for audit in audits}
    return [d for d in letters if selection.matches(d)], ledger


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _letter_json(letter: DeadLetter, audit: RedriveAudit | None) -> dict[str, Any]:
    return {
        "id": str(letter.id),
        "dlq_topic": letter.id.topic,
        "partition": letter.id.partition,
        "offset": letter.id.offset,
        "dead_lettered_at": letter.timestamp.isoformat(),
        "consumer_group": letter.consumer_group,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "attempts": letter.attempts,
        "error": letter.error,
        "original_topic": letter.original_topic,
        "original_partition": letter.original_partition,
        "original_offset": letter.original_offset,
        "parse_status": str(letter.parsed.status),
        "problem": letter.problem,
        "redriven": audit.model_dump(mode="json") if audit else None,
    }


@app.command("list")
def list_letters(
    topic: TopicOption = None,
    group: GroupOption = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Counts per topic and group instead of letters.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", help="Show the newest N letters (0: all).", min=0)
    ] = 50,
    as_json: JsonOption = False,
    bootstrap: Bootstrap = None,
) -> None:
    """List dead letters (all .dlq topics of the registry unless --topic)."""
    kafka = _kafka(bootstrap)
    selection = _selection(topic, group, None)
    with _progress("reading dead letters") as progress:
        letters, ledger = _run(lambda: _letters_and_ledger(kafka, selection, progress))
    if summary:
        _print_summary(letters, ledger, selection)
        return
    newest = sorted(letters, key=lambda d: (d.timestamp, d.id))
    shown = newest[-limit:] if limit else newest
    if as_json:
        for letter in shown:
            typer.echo(json.dumps(_letter_json(letter, ledger.get(str(letter.id)))))
        return
    out = console.out()
    if not letters:
        where = ", ".join(selection.dlq_topics)
        out.print(f"No dead letters{f' of group {group}' if group else ''} on {where}.")
        return
    table = Table(title="Dead letters (oldest first)", expand=False)
    # Five columns of stacked values fit an 80-column terminal; ids fold, never get cut.
    table.add_column("ID (for --id)", overflow="fold")
    table.add_column("Event", overflow="fold")
    table.add_column("Group, attempts", overflow="fold")
    table.add_column("Error", overflow="fold")
    table.add_column("Parked (UTC)", overflow="fold")
    for letter in shown:
        audit = ledger.get(str(letter.id))
        table.add_row(
            str(letter.id),
            f"{letter.event_type or '?'}\n{letter.event_id or '?'}",
            f"{letter.consumer_group or '?'}\n{_n(letter.attempts or 0, 'attempt')}",
            _short(letter.error, 40),
            f"{letter.timestamp:%Y-%m-%d %H:%M:%S}"
            + (f"\nredriven by {audit.operator}" if audit else ""),
        )
    out.print(table)
    if len(shown) < len(letters):
        out.print(
            f"Showing the newest {len(shown)} of {len(letters)}: narrow with --group or "
            "--topic, --limit 0 for all, --summary for counts."
        )
    out.print(f"Details of one: {carebridge('dlq show --id <ID>')}")


def _print_summary(
    letters: list[DeadLetter], ledger: dict[str, RedriveAudit], selection: Selection
) -> None:
    counts: Counter[tuple[str, str, str]] = Counter()
    for letter in letters:
        if str(letter.id) in ledger:
            state = "redriven"
        elif letter.redrivable:
            state = "pending"
        else:
            state = "cannot"
        counts[(letter.id.topic, letter.consumer_group or "?", state)] += 1
    table = Table(title="Dead letters per topic and consumer group")
    table.add_column("DLQ topic", overflow="fold")
    table.add_column("Group", overflow="fold")
    for column in ("Letters", "Can redrive", "Do not parse", "Redriven"):
        table.add_column(column, justify="right")
    for dlq_name in selection.dlq_topics:
        groups = sorted({g for t, g, _ in counts if t == dlq_name})
        if not groups:
            table.add_row(dlq_name, "", "0", "0", "0", "0")
        for group in groups:
            n = {state: counts[(dlq_name, group, state)] for state in ("pending", "cannot")}
            done = counts[(dlq_name, group, "redriven")]
            total = n["pending"] + n["cannot"] + done
            table.add_row(
                dlq_name, group, str(total), str(n["pending"]), str(n["cannot"]), str(done)
            )
    console.out().print(table)


@app.command("show")
def show(
    ident: Annotated[
        str,
        typer.Option("--id", help="A letter (<dlq topic>:<partition>:<offset>) or an event_id."),
    ],
    topic: TopicOption = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Also print the raw value of a letter that does not validate. It may hold "
            "anything a broken producer sent, PHI included: do not paste it into tickets.",
        ),
    ] = False,
    bootstrap: Bootstrap = None,
) -> None:
    """Headers, error and envelope of one letter (or of every letter of one event)."""
    kafka = _kafka(bootstrap)
    selection = _selection(topic, None, ident)
    with _progress("looking for the letter") as progress:
        letters, ledger = _run(lambda: _letters_and_ledger(kafka, selection, progress))
    if not letters:
        where = ", ".join(selection.dlq_topics)
        console.fail(
            f"no dead letter {ident} on {where}. `{carebridge('dlq list')}` prints the ids; an "
            "event_id finds every letter of that event."
        )
    out = console.out()
    for letter in letters:
        out.print(_details(letter, ledger.get(str(letter.id))))
        out.print(_headers(letter))
        _print_value(out, letter, raw)


def _details(letter: DeadLetter, audit: RedriveAudit | None) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    origin = (
        f"{letter.original_topic}:{letter.original_partition}:{letter.original_offset}"
        if letter.original_topic
        else "?"
    )
    rows = [
        ("dead-lettered at", f"{letter.timestamp:%Y-%m-%d %H:%M:%S} UTC"),
        ("consumer group", letter.consumer_group or "?"),
        ("attempts", str(letter.attempts or "?")),
        ("error", letter.error or "?"),
        ("original", origin),
        ("event", f"{letter.event_type or '?'}  {letter.event_id or '?'}"),
        ("key", (letter.key or b"").decode(errors="replace")),
        ("can redrive", f"no: {letter.problem}" if letter.problem else "yes"),
    ]
    if audit is not None:
        rows.append(
            (
                "redriven",
                f"{audit.at:%Y-%m-%d %H:%M:%S} UTC by {audit.operator} to "
                f"{audit.original_topic}:{audit.redriven_partition}:{audit.redriven_offset}",
            )
        )
    elif letter.redrivable:
        rows.append(("redrive", carebridge(f"dlq redrive --id {letter.id}")))
    for name, value in rows:
        grid.add_row(name, value)
    return Panel(grid, title=str(letter.id), title_align="left")


def _headers(letter: DeadLetter) -> Table:
    table = Table(title="Headers", title_justify="left", show_edge=False)
    table.add_column("header")
    table.add_column("value", overflow="fold")
    for key, value in letter.headers:
        table.add_row(key, "(no value)" if value is None else value.decode(errors="replace"))
    return table


def _print_value(out: Console, letter: DeadLetter, raw: bool) -> None:
    """The envelope; its data only when it validated against its model (ids and codes only,
    so no PHI by contract). Unvalidated data may hold anything: names of its fields only."""
    parsed = letter.parsed
    size = len(letter.value or b"")
    if parsed.is_parsed and parsed.envelope is not None:
        out.print("Envelope:")
        out.print(JSON(parsed.envelope.model_dump_json()))
        return
    if parsed.envelope is not None:
        envelope = parsed.envelope.model_dump(mode="json", exclude={"data"})
        out.print("Envelope (data not shown: it did not validate against a known model):")
        out.print(JSON(json.dumps(envelope)))
        out.print(f"data fields: {', '.join(sorted(parsed.envelope.data)) or '(none)'}")
    else:
        out.print(f"Value not shown: {size} bytes that are not a valid envelope.")
    if raw:
        out.print("[bold yellow]Raw value (may contain PHI; do not share):[/]")
        out.print((letter.value or b"").decode(errors="replace"), markup=False)
    else:
        out.print("--raw prints the raw value.")


@app.command("redrive")
def redrive(
    topic: TopicOption = None,
    group: GroupOption = None,
    ident: IdOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be redriven; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Who redrives, for the audit (default: your login)."),
    ] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Send dead letters back to their original topic, each once, with an audit record.

    Only the letters of one consumer group (--group), or one letter or event (--id).

    Every group reading the topic sees the copy; groups that had applied it drop it by event_id.

    Letters that do not parse stay where they are: they would only fail again.
    """
    kafka = _kafka(bootstrap)
    if group is None and ident is None:
        console.fail(
            "say whose letters to redrive: --group <consumer group> (see "
            f"`{carebridge('dlq list --summary')}`), or one letter or event with --id"
        )
    who = operator if operator is not None else _login()
    if not dry_run and not who.strip():
        console.fail("cannot tell who you are: pass --operator <your name> for the audit")
    selection = _selection(topic, group, ident)
    with _progress("reading dead letters") as progress:
        letters, ledger = _run(lambda: _letters_and_ledger(kafka, selection, progress))
    planned = dlq.plan(letters, selection, ledger.values())
    if ident is not None and not letters:
        console.fail(f"no dead letter {ident}{f' of group {group}' if group else ''}")
    _print_plan(planned)
    if not planned.selected:
        console.out().print("Nothing to redrive.")
        return
    if dry_run:
        console.out().print("Dry run: nothing sent.")
        return
    question = f"Redrive {_n(len(planned.selected), 'letter')} ({_n(planned.events, 'event')})?"
    try:
        console.confirm(question, yes=yes)
    except OpsError as exc:
        console.fail(str(exc))
    with _progress("redriving") as progress:
        result = _run(
            lambda: dlq.execute(
                kafka.servers,
                planned,
                operator=who,
                progress=progress,
                security=kafka.security,
                replication_factor=kafka.replication_factor,
            )
        )
    _print_redriven(result)


def _print_redriven(result: dlq.RedriveResult) -> None:
    out = console.out()
    skipped = (
        f"; skipped {result.already_redriven} already redriven" if result.already_redriven else ""
    )
    out.print(
        f"[green]Redriven {_n(result.redriven, 'letter')} as {_n(result.republished, 'event')}[/]"
        f"{skipped}."
    )
    if result.audits:
        out.print(f"Audit: {carebridge(f'dlq audit --run {result.audits[0].run_id}')}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def _print_plan(planned: dlq.RedrivePlan) -> None:
    out = console.out()
    if planned.selected:
        table = Table(
            title=f"To redrive: {_n(len(planned.selected), 'letter')}, "
            f"{_n(planned.events, 'event')}"
        )
        for column in ("ID", "Type", "Event ID", "Group", "Back to"):
            table.add_column(column, overflow="fold")
        for letter in planned.selected[:_SHOWN_ROWS]:
            table.add_row(
                str(letter.id),
                letter.event_type or "?",
                letter.event_id or "?",
                letter.consumer_group or "?",
                letter.original_topic or "?",
            )
        out.print(table)
        if len(planned.selected) > _SHOWN_ROWS:
            out.print(f"… and {len(planned.selected) - _SHOWN_ROWS} more.")
    if planned.invalid:
        ids = ", ".join(str(d.id) for d in planned.invalid[:5])
        more = f" and {len(planned.invalid) - 5} more" if len(planned.invalid) > 5 else ""
        out.print(
            f"[yellow]Skipping {_n(len(planned.invalid), 'letter')} that do not parse[/] "
            f"({ids}{more}): "
            f"they would fail again. Fix the producer; `{carebridge('dlq show --id <ID>')}` says "
            "why."
        )
    if planned.already_redriven:
        out.print(
            f"Skipping {_n(len(planned.already_redriven), 'letter')} already redriven "
            f"(`{carebridge('dlq audit')}` says when and by whom)."
        )


@app.command("audit")
def audit(
    ident: IdOption = None,
    group: GroupOption = None,
    run: Annotated[str | None, typer.Option("--run", help="Only the records of one run.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="Show the newest N records (0: all).", min=0)
    ] = 50,
    as_json: JsonOption = False,
    bootstrap: Bootstrap = None,
) -> None:
    """Who redrove which letter, when, and where it went (the redrive audit topic)."""
    kafka = _kafka(bootstrap)
    records = _run(lambda: dlq.read_audit(kafka.servers, security=kafka.security))
    letter = LetterId.parse(ident) if ident else None
    chosen = [
        a
        for a in records
        if (group is None or a.consumer_group == group)
        and (run is None or str(a.run_id) == run)
        and (ident is None or (a.letter == str(letter) if letter else str(a.event_id) == ident))
    ]
    shown = chosen[-limit:] if limit else chosen
    if as_json:
        for record in shown:
            typer.echo(record.model_dump_json())
        return
    out = console.out()
    if not chosen:
        out.print("No redrive recorded" + (" for that filter." if records else " yet."))
        return
    table = Table(title=f"Redrive audit ({dlq.AUDIT_TOPIC})")
    for column in ("At (UTC), operator", "Letter", "Event, group", "Back to (partition:offset)"):
        table.add_column(column, overflow="fold")
    for a in shown:
        table.add_row(
            f"{a.at:%Y-%m-%d %H:%M:%S}\n{a.operator}",
            a.letter,
            f"{a.event_type} v{a.event_version}\n{a.event_id}\n{a.consumer_group or '?'}",
            f"{a.original_topic}\n{a.original_partition}:{a.original_offset} -> "
            f"{a.redriven_partition}:{a.redriven_offset}",
        )
    out.print(table)
    if len(shown) < len(chosen):
        out.print(f"Showing the newest {len(shown)} of {len(chosen)} (--limit 0 for all).")
