"""Dead letters: read them, and redrive them to the topic they came from, with an audit trail.

A redrive republishes a group's valid letters to their original topic and appends one audit
record per letter to the audit topic, both in ONE Kafka transaction, so every committed
republish has its audit record and vice versa. The audit is also the ledger: a letter that has
an audit record is never redriven again. The redriving producer has a fixed transactional id:
starting it fences any other redrive still running and aborts its open transaction, and the
ledger is read only after that, so two operators cannot republish one letter twice.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord, RecordMetadata
from pydantic import BaseModel, ConfigDict, ValidationError

from carebridge_contracts import (
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
    OpsTopic,
    ParseResult,
    all_topics_with_dlq,
    dlq_topic,
    try_parse,
)
from carebridge_contracts.registry import DLQ_SUFFIX
from carebridge_shared.consumer import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
    DLQ_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
)
from carebridge_shared.kafka import (
    KafkaSecurity,
    KafkaUnreachable,
    connection_problem,
    ensure_topics,
    env_security,
    make_producer,
)
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

REDRIVEN_FROM = "redriven-from"
AUDIT_TOPIC = str(OpsTopic.DLQ_REDRIVE_AUDIT)
# Kept forever; one partition keeps the audit in the order it was written.
AUDIT_TOPIC_CONFIGS = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
REDRIVE_TRANSACTIONAL_ID = "carebridge-dlq-redrive"
BATCH_EVENTS = 100  # events republished per transaction


class DlqError(Exception):
    """An expected problem; the message tells the operator what to do next."""


class UnknownTopic(DlqError):
    pass


class KafkaUnavailable(DlqError):
    pass


async def _unreachable(bootstrap_servers: str, security: KafkaSecurity) -> KafkaUnavailable:
    return KafkaUnavailable(
        await connection_problem(bootstrap_servers, security)
        + " (`make stack-up` starts the local stack; KAFKA_BOOTSTRAP_SERVERS names the brokers)"
    )


def dead_letter_topics() -> list[str]:
    """Every `.dlq` topic of the contracts registry."""
    return [t for t in all_topics_with_dlq() if t.endswith(DLQ_SUFFIX)]


def resolve_dlq_topic(topic: str) -> str:
    """The dead-letter topic named by `topic`: an event topic of the registry or its `.dlq`."""
    known = dead_letter_topics()
    name = topic if topic.endswith(DLQ_SUFFIX) else dlq_topic(topic)
    if name not in known:
        listed = ", ".join(t.removesuffix(DLQ_SUFFIX) for t in known)
        raise UnknownTopic(
            f"unknown topic {topic!r}: not in the contracts registry. Known topics: {listed} "
            "(or their .dlq)"
        )
    return name


@dataclass(frozen=True, order=True)
class LetterId:
    """Where a dead letter sits: `<dlq topic>:<partition>:<offset>`."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> LetterId | None:
        parts = text.strip().rsplit(":", 2)
        if len(parts) != 3 or not parts[0].endswith(DLQ_SUFFIX):
            return None
        try:
            partition, offset = int(parts[1]), int(parts[2])
        except ValueError:
            return None
        if partition < 0 or offset < 0:
            return None
        return cls(parts[0], partition, offset)


@dataclass(frozen=True, eq=False)
class DeadLetter:
    id: LetterId
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # Kafka allows a header without a value
    timestamp: datetime

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        return cls(
            id=LetterId(record.topic, record.partition, record.offset),
            key=record.key,
            value=record.value,
            headers=tuple(record.headers or ()),
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        )

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return None if value is None else value.decode(errors="replace")
        return None

    @cached_property
    def parsed(self) -> ParseResult:
        return try_parse(self.value)

    @property
    def consumer_group(self) -> str | None:
        return self.header(DLQ_CONSUMER_GROUP)

    @property
    def original_topic(self) -> str | None:
        return self.header(DLQ_ORIGINAL_TOPIC)

    @property
    def original_partition(self) -> int | None:
        return _int(self.header(DLQ_ORIGINAL_PARTITION))

    @property
    def original_offset(self) -> int | None:
        return _int(self.header(DLQ_ORIGINAL_OFFSET))

    @property
    def error(self) -> str | None:
        return self.header(DLQ_ERROR)

    @property
    def attempts(self) -> int | None:
        return _int(self.header(DLQ_ATTEMPTS))

    @property
    def event_id(self) -> str | None:
        """From the envelope, else from the `ce-id` header (a letter that does not parse)."""
        envelope = self.parsed.envelope
        return str(envelope.event_id) if envelope else self.header(HEADER_EVENT_ID)

    @property
    def event_type(self) -> str | None:
        envelope = self.parsed.envelope
        if envelope is not None:
            return f"{envelope.type} v{envelope.version}"
        kind, version = self.header(HEADER_TYPE), self.header(HEADER_VERSION)
        if kind is None:
            return None
        return f"{kind} v{version}" if version else kind

    @property
    def redrivable(self) -> bool:
        """Only a valid event can succeed when redriven; anything else would be parked again."""
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why this letter cannot be redriven, or None."""
        if not self.original_topic:
            return f"no {DLQ_ORIGINAL_TOPIC} header"
        if dlq_topic(self.original_topic) != self.id.topic:  # never send a letter elsewhere
            return f"{DLQ_ORIGINAL_TOPIC} {self.original_topic!r} does not match {self.id.topic}"
        if self.parsed.ignored_fields:  # the services' strict parse refuses unknown fields
            return f"fields unknown to this version: {', '.join(self.parsed.ignored_fields)}"
        return None if self.parsed.is_parsed else self.parsed.reason


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class RedriveAudit(BaseModel):
    """One redriven letter: who, when, what, and where it went. JSON on the audit topic."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    audit_id: uuid.UUID
    run_id: uuid.UUID  # the records of one `redrive` run share it
    at: datetime
    operator: str
    host: str
    letter: str
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    consumer_group: str | None
    event_id: uuid.UUID
    event_type: str
    event_version: int
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    redriven_partition: int
    redriven_offset: int

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


Progress = Callable[[int, int], None]  # (done, total)


def _noop(done: int, total: int) -> None:
    return None


async def _existing(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    cluster = await consumer._client.fetch_all_metadata()  # no public equivalent that refreshes
    partitions: list[TopicPartition] = []
    for topic in topics:
        for partition in sorted(cluster.partitions_for_topic(topic) or ()):
            partitions.append(TopicPartition(topic, partition))
    return partitions


async def _reader(
    bootstrap_servers: str,
    security: KafkaSecurity,
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_uncommitted",
) -> AIOKafkaConsumer:
    """A started consumer without group or commits, for assigned partitions only."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        # A fresh assignment starts at the beginning. (The default, latest, plus a seek to the
        # beginning races: the latest reset can land after the seek and skip every record.)
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        request_timeout_ms=30_000,
        **security.client_options(),
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise await _unreachable(bootstrap_servers, security) from exc
    return consumer


async def _scan(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    isolation_level: Literal["read_committed", "read_uncommitted"],
    security: KafkaSecurity,
    progress: Progress = _noop,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topics` from the beginning to the end each partition had at the start.
    Topics that do not exist yet are empty. No consumer group, nothing committed."""
    consumer = await _reader(bootstrap_servers, security, isolation_level)
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = await _existing(consumer, topics)
        if not partitions:
            return found
        consumer.assign(partitions)
        start = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        total = sum(end[tp] - start[tp] for tp in partitions)
        pending = [tp for tp in partitions if end[tp] > start[tp]]
        progress(0, total)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                found.extend(r for r in records if r.offset < end[tp])
            progress(len(found), total)
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        return found
    finally:
        await consumer.stop()


async def read_dead_letters(
    bootstrap_servers: str,
    dlq_topics: Sequence[str],
    *,
    security: KafkaSecurity | None = None,
    progress: Progress = _noop,
) -> list[DeadLetter]:
    """Every letter on `dlq_topics`, in (topic, partition, offset) order."""
    security = security or env_security()
    records = await _scan(
        bootstrap_servers,
        dlq_topics,
        isolation_level="read_uncommitted",
        security=security,
        progress=progress,
    )
    return sorted((DeadLetter.from_record(r) for r in records), key=lambda d: d.id)


async def read_letter(
    bootstrap_servers: str, letter_id: LetterId, *, security: KafkaSecurity | None = None
) -> DeadLetter | None:
    """The one letter at `letter_id`, or None when there is none (wrong offset, expired)."""
    security = security or env_security()
    consumer = await _reader(bootstrap_servers, security)
    try:
        tp = TopicPartition(letter_id.topic, letter_id.partition)
        if tp not in await _existing(consumer, [letter_id.topic]):
            return None
        consumer.assign([tp])
        start, end = (
            (await consumer.beginning_offsets([tp]))[tp],
            (await consumer.end_offsets([tp]))[tp],
        )
        if not start <= letter_id.offset < end:
            return None
        consumer.seek(tp, letter_id.offset)
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.offset == letter_id.offset:
                    return DeadLetter.from_record(record)
                if record.offset > letter_id.offset:
                    return None
        return None
    finally:
        await consumer.stop()


async def read_audit(
    bootstrap_servers: str, *, security: KafkaSecurity | None = None
) -> list[RedriveAudit]:
    """Every committed audit record, oldest first."""
    security = security or env_security()
    records = await _scan(
        bootstrap_servers, [AUDIT_TOPIC], isolation_level="read_committed", security=security
    )
    audits: list[RedriveAudit] = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            audits.append(RedriveAudit.model_validate_json(record.value or b""))
        except ValidationError:
            log.warning("audit_record_unreadable", partition=record.partition, offset=record.offset)
    return audits


@dataclass(frozen=True)
class Selection:
    """Which letters a command is about: one group's, one letter, or one event's."""

    dlq_topics: tuple[str, ...]
    group: str | None = None
    letter: LetterId | None = None
    event_id: uuid.UUID | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if letter.id.topic not in self.dlq_topics:
            return False
        if self.group is not None and letter.consumer_group != self.group:
            return False
        if self.letter is not None and letter.id != self.letter:
            return False
        return self.event_id is None or letter.event_id == str(self.event_id)


@dataclass(frozen=True)
class RedrivePlan:
    selected: list[DeadLetter]  # valid and not redriven yet: these go back
    invalid: list[DeadLetter]  # selected, but do not parse (or lack their origin): they stay
    already_redriven: list[tuple[DeadLetter, RedriveAudit]]
    not_selected: int  # letters on the topics that belong to other groups or ids

    @property
    def events(self) -> int:
        return len(_by_event(self.selected))


def plan(
    letters: Iterable[DeadLetter], selection: Selection, ledger: Iterable[RedriveAudit]
) -> RedrivePlan:
    done = {audit.letter: audit for audit in ledger}
    selected: list[DeadLetter] = []
    invalid: list[DeadLetter] = []
    already: list[tuple[DeadLetter, RedriveAudit]] = []
    not_selected = 0
    for letter in letters:
        if not selection.matches(letter):
            not_selected += 1
        elif str(letter.id) in done:
            already.append((letter, done[str(letter.id)]))
        elif letter.redrivable:
            selected.append(letter)
        else:
            invalid.append(letter)
    return RedrivePlan(selected, invalid, already, not_selected)


async def plan_redrive(
    bootstrap_servers: str,
    selection: Selection,
    *,
    security: KafkaSecurity | None = None,
    progress: Progress = _noop,
) -> RedrivePlan:
    security = security or env_security()
    letters = await read_dead_letters(
        bootstrap_servers, selection.dlq_topics, security=security, progress=progress
    )
    return plan(letters, selection, await read_audit(bootstrap_servers, security=security))


@dataclass
class RedriveResult:
    audits: list[RedriveAudit] = field(default_factory=list)
    invalid: int = 0  # selected letters left on the DLQ because they cannot succeed
    already_redriven: int = 0  # skipped: the ledger has them (an earlier or concurrent run)
    other_groups: int = 0  # letters on the topics that were not selected

    @property
    def redriven(self) -> int:
        return len(self.audits)

    @property
    def republished(self) -> int:
        return len({(a.original_topic, a.event_id) for a in self.audits})


def _by_event(letters: Iterable[DeadLetter]) -> dict[tuple[str, str], list[DeadLetter]]:
    """Letters of one event (several groups, or parked again) go back as ONE copy."""
    events: dict[tuple[str, str], list[DeadLetter]] = {}
    for letter in letters:
        events.setdefault((letter.original_topic or "", letter.event_id or ""), []).append(letter)
    return events


async def execute(
    bootstrap_servers: str,
    planned: RedrivePlan,
    *,
    operator: str,
    progress: Progress = _noop,
    security: KafkaSecurity | None = None,
    transactional_id: str = REDRIVE_TRANSACTIONAL_ID,
    replication_factor: int = 1,
) -> RedriveResult:
    """Republish the planned letters, each event once, with its audit records, in transactions.

    Letters that an earlier or concurrent run redrove after `planned` was made are skipped.
    """
    security = security or env_security()
    if not operator.strip():
        raise DlqError("say who you are: pass --operator (the audit names who redrove)")
    await _ensure_audit_topic(bootstrap_servers, security, replication_factor)
    producer = await _start_transactional_producer(bootstrap_servers, security, transactional_id)
    audit_run = _AuditRun(uuid.uuid4(), operator, socket.gethostname())
    result = RedriveResult(invalid=len(planned.invalid), other_groups=planned.not_selected)
    try:
        done = {a.letter for a in await read_audit(bootstrap_servers, security=security)}
        fresh = [letter for letter in planned.selected if str(letter.id) not in done]
        result.already_redriven = len(planned.already_redriven) + len(planned.selected) - len(fresh)
        progress(0, len(fresh))
        await _redrive_in_batches(producer, fresh, audit_run, result, progress)
    except KafkaError as exc:
        raise DlqError(
            f"redrive stopped after {result.redriven} letters: {type(exc).__name__} "
            f"({exc}). What was committed is in the audit; run the same command again to "
            "redrive the rest (another redrive starting meanwhile also stops this one)."
        ) from exc
    finally:
        await producer.stop()
    log.info(
        "dlq_redriven",
        run_id=str(audit_run.run_id),
        letters=result.redriven,
        events=result.republished,
        invalid=result.invalid,
        already_redriven=result.already_redriven,
    )
    return result


@dataclass(frozen=True)
class _AuditRun:
    """Who redrives, from where, in which run: what every audit record of the run carries."""

    run_id: uuid.UUID
    operator: str
    host: str


async def _ensure_audit_topic(
    bootstrap_servers: str, security: KafkaSecurity, replication_factor: int
) -> None:
    try:
        await ensure_topics(
            bootstrap_servers,
            [AUDIT_TOPIC],
            partitions=1,
            replication_factor=replication_factor,
            configs=AUDIT_TOPIC_CONFIGS,
            security=security,
        )
    except KafkaUnreachable as exc:
        raise KafkaUnavailable(str(exc)) from exc


async def _start_transactional_producer(
    bootstrap_servers: str, security: KafkaSecurity, transactional_id: str
) -> AIOKafkaProducer:
    producer = make_producer(
        bootstrap_servers,
        client_id=f"{transactional_id}-producer",
        transactional_id=transactional_id,
        security=security,
    )
    try:
        await producer.start()  # fences any other redrive; its open transaction is aborted
    except KafkaConnectionError as exc:
        await producer.stop()
        raise await _unreachable(bootstrap_servers, security) from exc
    return producer


async def _redrive_in_batches(
    producer: AIOKafkaProducer,
    fresh: list[DeadLetter],
    audit_run: _AuditRun,
    result: RedriveResult,
    progress: Progress,
) -> None:
    """Each event once (its first letter's copy) with an audit record per letter, BATCH_EVENTS
    events to a transaction; `result.audits` grows as transactions commit."""
    events = list(_by_event(fresh).values())
    for start in range(0, len(events), BATCH_EVENTS):
        batch = events[start : start + BATCH_EVENTS]
        async with producer.transaction():
            sent = [await _republish(producer, letters[0]) for letters in batch]
            audits = []
            for letters, future in zip(batch, sent, strict=True):
                metadata = await future
                for letter in letters:
                    audit = _audit(
                        letter, audit_run.run_id, audit_run.operator, audit_run.host, metadata
                    )
                    await producer.send(AUDIT_TOPIC, audit.to_bytes(), key=audit.letter.encode())
                    audits.append(audit)
        result.audits.extend(audits)
        progress(len(result.audits), len(fresh))


async def _republish(
    producer: AIOKafkaProducer, letter: DeadLetter
) -> asyncio.Future[RecordMetadata]:
    headers = [(k, v) for k, v in letter.headers if k not in DLQ_HEADERS and k != REDRIVEN_FROM]
    headers.append((REDRIVEN_FROM, str(letter.id).encode()))
    future: asyncio.Future[RecordMetadata] = await producer.send(
        letter.original_topic, value=letter.value, key=letter.key, headers=headers
    )
    return future


def _audit(
    letter: DeadLetter, run_id: uuid.UUID, operator: str, host: str, metadata: RecordMetadata
) -> RedriveAudit:
    envelope = letter.parsed.envelope
    assert envelope is not None and letter.original_topic  # only redrivable letters get here
    return RedriveAudit(
        audit_id=uuid.uuid4(),
        run_id=run_id,
        at=datetime.now(UTC),
        operator=operator,
        host=host,
        letter=str(letter.id),
        dlq_topic=letter.id.topic,
        dlq_partition=letter.id.partition,
        dlq_offset=letter.id.offset,
        consumer_group=letter.consumer_group,
        event_id=envelope.event_id,
        event_type=envelope.type,
        event_version=envelope.version,
        original_topic=letter.original_topic,
        original_partition=letter.original_partition,
        original_offset=letter.original_offset,
        redriven_partition=metadata.partition,
        redriven_offset=metadata.offset,
    )


async def redrive(
    bootstrap_servers: str,
    dlq: str,
    *,
    failed_group: str,
    operator: str = "carebridge",
    security: KafkaSecurity | None = None,
) -> RedriveResult:
    """Redrive every valid letter that `failed_group` parked on `dlq` (library entry point;
    operators use `carebridge dlq redrive`)."""
    security = security or env_security()
    selection = Selection((resolve_dlq_topic(dlq),), group=failed_group)
    planned = await plan_redrive(bootstrap_servers, selection, security=security)
    return await execute(bootstrap_servers, planned, operator=operator, security=security)
