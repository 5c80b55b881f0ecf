"""Hypothesis against a real consumer on the real Kafka and PostgreSQL: malformed records (bad
bytes, bad JSON, broken envelopes, odd keys and headers) never crash the ConsumerRuntime; each
one lands on `<topic>.dlq` with a reason, and a valid event published after them is applied."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carebridge_contracts import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
    AssessmentCompleted,
    ContractError,
    Topic,
    dlq_topic,
    kafka_headers,
    parse,
)
from carebridge_devstack.testing import (
    eventually,
    migrated_pool,
    sample_assessment,
    service_context,
    wrap,
)
from carebridge_shared import consumer
from carebridge_shared.consumer import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
    DLQ_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    ConsumerRuntime,
    EventContext,
    RetryPolicy,
    Subscriptions,
)
from carebridge_shared.kafka import make_producer, security_options

pytestmark = pytest.mark.integration

# Bounded so CI stays fast (each example is a round trip through Kafka); see docs/security.md.
MAX_EXAMPLES = 40

TOPIC = str(Topic.ASSESSMENTS)
DLQ = dlq_topic(TOPIC)
PARTITION = 0  # every record goes here, so the marker is consumed after all of them
SCHEMA = "consumer_fuzz"
MIGRATIONS = Path(__file__).parent.parent / "procs" / "migrations"


def _contract_error_names(cls: type[Exception] = ContractError) -> set[str]:
    return {cls.__name__}.union(*(_contract_error_names(sub) for sub in cls.__subclasses__()))


@dataclass(frozen=True)
class Malformed:
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes | None]]


def _is_poison(value: bytes | None) -> bool:
    """What the runtime must dead-letter: anything `parse` rejects (a parse that raises
    something else fails the test right here: that is a parser bug)."""
    try:
        parse(value or b"")
    except ContractError:
        return True
    return False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def broken_envelopes(draw: st.DrawFn) -> bytes:
    """A valid AssessmentCompleted envelope with one field replaced or dropped."""
    patient = "fuzz-patient"
    document: dict[str, Any] = json.loads(wrap(sample_assessment(patient), patient).to_bytes())
    inner = draw(st.booleans())
    fields = document["data"] if inner else document
    name = draw(st.sampled_from(sorted(fields)))
    if draw(st.booleans()):
        fields[name] = draw(json_values)
    else:
        del fields[name]
    return json.dumps(document).encode()


values = st.one_of(
    st.none(),
    st.binary(max_size=512),
    json_values.map(lambda doc: json.dumps(doc).encode()),
    broken_envelopes(),
)
header_names = st.sampled_from(
    [
        HEADER_TYPE,
        HEADER_VERSION,
        HEADER_EVENT_ID,
        HEADER_CORRELATION_ID,
        "traceparent",
        *DLQ_HEADERS,
    ]
) | st.text(max_size=12)
header_values = st.none() | st.binary(max_size=40) | st.sampled_from([b"AssessmentCompleted", b"1"])


@st.composite
def malformed_records(draw: st.DrawFn) -> Malformed:
    value = draw(values.filter(_is_poison))
    # aiokafka sends no record without a key and a value: give such a one a key.
    key = draw(st.none() | st.binary(max_size=40)) if value is not None else draw(st.binary())
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=5))
    return Malformed(value, key, headers)


class DeadLetters:
    """Collects this group's dead letters from the DLQ topic, by original offset."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, **security_options()
        )
        self._group = group.encode()
        self.letters: dict[int, ConsumerRecord[bytes, bytes]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()

        async def known() -> set[int] | None:
            await self._consumer._client.force_metadata_update()
            partitions: set[int] | None = self._consumer.partitions_for_topic(DLQ)
            return partitions

        found: set[int] = await eventually(known, timeout=30, what=f"{DLQ} metadata")
        partitions = [TopicPartition(DLQ, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        for partition, end in (await self._consumer.end_offsets(partitions)).items():
            self._consumer.seek(partition, end)
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get(DLQ_CONSUMER_GROUP) == self._group:
                        self.letters[int(headers[DLQ_ORIGINAL_OFFSET] or b"-1")] = record

    async def letter_for(
        self, offset: int, timeout: float = 20
    ) -> ConsumerRecord[bytes, bytes] | None:
        with contextlib.suppress(AssertionError):
            await eventually(lambda: offset in self.letters, timeout=timeout)
        return self.letters.get(offset)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


def _record(*, offset: int, value: bytes | None, key: bytes | None) -> ConsumerRecord[bytes, bytes]:
    """A record as the broker would hand it over (offsets below 0 keep it apart from real ones)."""
    return ConsumerRecord(
        topic=TOPIC, partition=PARTITION, offset=offset, timestamp=0, timestamp_type=0,
        key=key, value=value, checksum=None, serialized_key_size=-1,
        serialized_value_size=-1, headers=[],
    )  # fmt: skip


@pytest.fixture
async def pool(fresh_database_url: str, stack_endpoints: Any) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_pool(
        fresh_database_url,
        SCHEMA,
        MIGRATIONS,
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        topics=[TOPIC, DLQ],
    ) as pool:
        yield pool


@pytest.fixture
async def running(
    pool: asyncpg.Pool, stack_endpoints: Any
) -> AsyncIterator[tuple[ConsumerRuntime, list[uuid.UUID], AIOKafkaProducer, DeadLetters]]:
    """A started runtime (new group, from "latest") that records the events it applied, a
    producer and a reader of the group's dead letters."""
    bootstrap = stack_endpoints.kafka_bootstrap
    group = f"fuzz-{uuid.uuid4().hex[:8]}"
    applied: list[uuid.UUID] = []
    subscriptions = Subscriptions()

    @subscriptions.on(AssessmentCompleted)
    async def apply(event: AssessmentCompleted, ctx: EventContext) -> None:
        applied.append(ctx.envelope.event_id)

    runtime = ConsumerRuntime(
        bootstrap_servers=bootstrap,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=group,
        producer_factory=lambda: make_producer(bootstrap, "fuzz-dlq"),
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1),
        auto_offset_reset="latest",
    )

    producer = make_producer(bootstrap, "fuzz-producer")
    letters = DeadLetters(bootstrap, group)
    async with contextlib.AsyncExitStack() as stack:
        await producer.start()
        stack.push_async_callback(producer.stop)
        stack.push_async_callback(letters.stop)
        await letters.start()
        stack.push_async_callback(runtime.stop)
        await runtime.start()
        await asyncio.wait_for(runtime.until_joined(), timeout=60)
        yield runtime, applied, producer, letters


# The runtime's tracing (OpenTelemetry ids) uses `random` on the event loop thread while
# Hypothesis draws in a worker thread; the strategies here use no `random` themselves.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module")
async def test_malformed_records_are_dead_lettered_and_the_consumer_goes_on(
    running: tuple[ConsumerRuntime, list[uuid.UUID], AIOKafkaProducer, DeadLetters],
) -> None:
    runtime, applied, producer, letters = running
    loop = asyncio.get_running_loop()
    reasons = _contract_error_names()
    fed: list[Malformed] = []
    stuck: list[Malformed] = []

    async def publish_and_await_letter(
        record: Malformed,
    ) -> tuple[int, ConsumerRecord[bytes, bytes] | None]:
        sent = await producer.send_and_wait(
            TOPIC, value=record.value, key=record.key, headers=record.headers, partition=PARTITION
        )
        return sent.offset, await letters.letter_for(sent.offset)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(malformed_records())
    def each_malformed_record_lands_on_the_dlq(record: Malformed) -> None:
        # Runs in a worker thread; Kafka I/O runs on the test's loop, where the runtime lives.
        if stuck:
            return  # the partition is blocked by an earlier record: nothing more to learn
        future = asyncio.run_coroutine_threadsafe(publish_and_await_letter(record), loop)
        offset, letter = future.result(timeout=60)
        if letter is None:
            stuck.append(record)
            raise AssertionError(f"never dead-lettered: the consumer is stuck on {record}")
        fed.append(record)
        headers = letter.headers or ()
        dlq = {name: value for name, value in headers if name in DLQ_HEADERS}
        assert [name for name, _ in headers].count(DLQ_ERROR) == 1, "one reason, not the sender's"
        assert dlq[DLQ_ORIGINAL_TOPIC] == TOPIC.encode()
        assert dlq[DLQ_ORIGINAL_PARTITION] == str(PARTITION).encode()
        assert dlq[DLQ_ORIGINAL_OFFSET] == str(offset).encode()
        assert dlq[DLQ_ATTEMPTS] == b"1", "poison is not retried"
        error = (dlq[DLQ_ERROR] or b"").decode()
        assert error.split(":", 1)[0] in reasons and error.split(":", 1)[1].strip(), error
        assert (letter.value, letter.key) == (record.value, record.key)
        kept = [(k, v) for k, v in record.headers if k not in DLQ_HEADERS]
        assert [(k, v) for k, v in headers if k not in DLQ_HEADERS] == kept

    await asyncio.to_thread(each_malformed_record_lands_on_the_dlq)
    assert len(fed) >= MAX_EXAMPLES

    patient = f"fuzz-{uuid.uuid4().hex[:8]}"
    marker = wrap(sample_assessment(patient), patient)
    await producer.send_and_wait(
        TOPIC,
        value=marker.to_bytes(),
        key=patient.encode(),
        headers=kafka_headers(marker),
        partition=PARTITION,
    )
    await eventually(lambda: marker.event_id in applied, timeout=60, what="the marker event")
    assert runtime.started and runtime.joined
    print(f"consumer fuzz: {len(fed)} malformed records dead-lettered, marker applied")


async def test_a_record_without_key_or_value_is_dead_lettered(
    running: tuple[ConsumerRuntime, list[uuid.UUID], AIOKafkaProducer, DeadLetters],
) -> None:
    """Other clients may send a record with neither key nor value (aiokafka cannot): the
    runtime must still park it rather than fail on it forever."""
    runtime, _, _, letters = running
    await runtime.process(_record(offset=-7, value=None, key=None))
    letter = await letters.letter_for(-7)
    assert letter is not None
    assert dict(letter.headers)[DLQ_ERROR].startswith(b"InvalidEnvelope")
    assert (letter.key, letter.value) == (None, b"")


async def test_a_parser_bug_dead_letters_instead_of_blocking_the_partition(
    running: tuple[ConsumerRuntime, list[uuid.UUID], AIOKafkaProducer, DeadLetters],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parsing is deterministic, so retrying an error it raises cannot help: whatever the
    parser raises, the record is parked (without the error's message: it may quote input)."""
    runtime, _, _, letters = running

    def broken_parse(_value: object) -> Any:
        raise OverflowError("Jane Doe's date value out of range")

    monkeypatch.setattr(consumer, "parse", broken_parse)
    await runtime.process(_record(offset=-8, value=b"{}", key=b"k"))
    letter = await letters.letter_for(-8)
    assert letter is not None
    assert dict(letter.headers)[DLQ_ERROR] == b"OverflowError: unparseable"


@pytest.mark.parametrize(
    "headers",
    [[("traceparent", None)], [(HEADER_TYPE, b"\xff\xfe"), (HEADER_VERSION, b"1")]],
    ids=["null-header", "binary-header"],
)
async def test_a_record_with_a_null_or_binary_header_is_dead_lettered(
    running: tuple[ConsumerRuntime, list[uuid.UUID], AIOKafkaProducer, DeadLetters],
    headers: list[tuple[str, bytes | None]],
) -> None:
    """Regression: FastStream decoded every header as UTF-8 before any handler ran, so such a
    record was retried forever and blocked its partition."""
    _, _, producer, letters = running
    sent = await producer.send_and_wait(
        TOPIC, value=b"{}", key=b"k", headers=headers, partition=PARTITION
    )
    letter = await letters.letter_for(sent.offset)
    assert letter is not None, "the record was never dead-lettered: the partition is stuck"
    assert [(k, v) for k, v in letter.headers if k not in DLQ_HEADERS] == headers
