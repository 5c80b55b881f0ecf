"""`carebridge dlq` against real Kafka and PostgreSQL: a handler bug parks an event, the bug is
fixed, the redrive brings it back once, with an audit record, and never twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from carebridge_contracts import CarePlanUpdated, Envelope, Topic, dlq_topic, kafka_headers
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.testing import (
    Record,
    eventually,
    migrated_pool,
    produce,
    produce_raw,
    read_topic,
    service_context,
    wrap,
)
from carebridge_ops.cli import app
from carebridge_ops.dead_letters import REDRIVEN_FROM
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
from carebridge_shared.kafka import ensure_topics, make_producer

pytestmark = pytest.mark.integration

TOPIC = str(Topic.CARE_PLANS)
DLQ = dlq_topic(TOPIC)
SCHEMA = "ops_dlq_test"
MIGRATIONS = Path(__file__).parent / "migrations"


@pytest.fixture
async def topics(stack_endpoints: StackEndpoints) -> None:
    await ensure_topics(
        stack_endpoints.kafka_bootstrap, [TOPIC, DLQ], partitions=3, replication_factor=1
    )


@pytest.fixture
async def pool(fresh_database_url: str, stack_endpoints: StackEndpoints) -> AsyncIterator[Any]:
    async with migrated_pool(
        fresh_database_url,
        SCHEMA,
        MIGRATIONS,
        bootstrap_servers=stack_endpoints.kafka_bootstrap,
        topics=[TOPIC, DLQ],
    ) as pool:
        yield pool


async def carebridge(bootstrap: str, *args: str) -> Result:
    """Run the `carebridge` command (in a thread: it runs its own event loop)."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "COLUMNS": "250"}
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, list(args), env=env))


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).splitlines() if line.strip()]


def plan_update(patient: str, sequence: int = 1) -> Envelope:
    event = CarePlanUpdated(
        patient_id=patient,
        plan_version=sequence,
        changed_sections=["goals"],
        author_id="clin-7",
        author_role="therapist",
    )
    return wrap(event, patient, sequence=sequence)


def runtime(pool: Any, subscriptions: Subscriptions, bootstrap: str, group: str) -> ConsumerRuntime:
    return ConsumerRuntime(
        bootstrap_servers=bootstrap,
        service=service_context(pool),
        subscriptions=subscriptions,
        group_id=group,
        producer_factory=lambda: make_producer(bootstrap, "ops-test-dlq"),
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.2),
        auto_offset_reset="latest",  # new group: only what this test publishes
    )


async def effects(pool: Any, event_id: uuid.UUID) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM effects WHERE event_id = $1", event_id)
    return count


def event_id_of(record: Record) -> uuid.UUID | None:
    try:
        return Envelope.from_bytes(record.value).event_id
    except Exception:
        return None


async def test_a_redriven_letter_takes_effect_exactly_once_is_audited_and_never_sent_twice(
    pool: asyncpg.Pool, stack_endpoints: StackEndpoints
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group = f"ops-dlq-{uuid.uuid4().hex[:8]}"
    event = plan_update(patient)
    attempts: list[int] = []

    async def apply(event: CarePlanUpdated, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            await ctx.conn.execute(
                "INSERT INTO effects (event_id, subject) VALUES ($1, $2)",
                ctx.envelope.event_id,
                patient,
            )

    with_bug = Subscriptions()

    @with_bug.on(CarePlanUpdated)
    async def apply_with_bug(event: CarePlanUpdated, ctx: EventContext) -> None:
        if ctx.envelope.subject == patient:
            attempts.append(1)
            raise ZeroDivisionError("plan version ratio")  # the bug

    buggy = runtime(pool, with_bug, bootstrap, group)

    await buggy.start()
    try:
        await asyncio.wait_for(buggy.until_joined(), timeout=60)
        await produce(bootstrap, event)
        await read_topic(
            bootstrap,
            DLQ,
            where=lambda r: r.headers.get(DLQ_CONSUMER_GROUP) == group.encode(),
            expect=1,
            timeout=60,
        )
    finally:
        await buggy.stop()
    assert len(attempts) == 3 and await effects(pool, event.event_id) == 0

    # The fix is deployed: the same group, a corrected handler.
    corrected = Subscriptions()
    corrected.on(CarePlanUpdated)(apply)
    fixed = runtime(pool, corrected, bootstrap, group)
    await fixed.start()
    try:
        await asyncio.wait_for(fixed.until_joined(), timeout=60)
        [letter] = json_lines(
            await carebridge(bootstrap, "dlq", "list", "--group", group, "--json")
        )
        assert letter["event_id"] == str(event.event_id)
        assert (letter["attempts"], letter["consumer_group"]) == (3, group)
        assert letter["error"].startswith("ZeroDivisionError")
        assert letter["redriven"] is None and letter["dlq_topic"] == DLQ

        dry = ok(await carebridge(bootstrap, "dlq", "redrive", "--group", group, "--dry-run"))
        assert letter["id"] in dry and "Dry run: nothing sent." in dry

        unconfirmed = await carebridge(bootstrap, "dlq", "redrive", "--group", group)
        assert unconfirmed.exit_code == 2 and "pass --yes" in unconfirmed.stderr

        before = datetime.now(UTC)
        redrive = ["dlq", "redrive", "--group", group, "--topic", TOPIC, "--operator", "alice"]
        redriven = ok(await carebridge(bootstrap, *redrive, "--yes"))
        assert "Redriven 1 letter as 1 event" in redriven
        await eventually(lambda: effects(pool, event.event_id), what="the redriven effect")

        again = ok(await carebridge(bootstrap, "dlq", "redrive", "--group", group, "--yes"))
        assert "Nothing to redrive." in again and "1 letter already redriven" in again
        by_id = ok(await carebridge(bootstrap, "dlq", "redrive", "--id", letter["id"], "--yes"))
        assert "Nothing to redrive." in by_id

        # Once a later event of the patient is applied, everything before it on the partition
        # has been handled: a second copy, had there been one, too.
        marker = plan_update(patient, sequence=2)
        await produce(bootstrap, marker)
        await eventually(lambda: effects(pool, marker.event_id), what="the marker event")
    finally:
        await fixed.stop()

    assert await effects(pool, event.event_id) == 1
    copies = await read_topic(bootstrap, TOPIC, where=lambda r: event_id_of(r) == event.event_id)
    assert len(copies) == 2, "the original and ONE redriven copy"
    original, copy = copies if REDRIVEN_FROM not in copies[0].headers else copies[::-1]
    assert copy.headers[REDRIVEN_FROM] == letter["id"].encode()
    assert not set(DLQ_HEADERS) & set(copy.headers)
    assert copy.key == patient.encode() and copy.value == event.to_bytes()

    [audit] = json_lines(
        await carebridge(bootstrap, "dlq", "audit", "--id", letter["id"], "--json")
    )
    assert audit["operator"] == "alice" and audit["host"]
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(audit["at"]) <= datetime.now(UTC)
    assert (audit["letter"], audit["consumer_group"]) == (letter["id"], group)
    assert (audit["event_id"], audit["event_type"], audit["event_version"]) == (
        str(event.event_id),
        "CarePlanUpdated",
        1,
    )
    assert (audit["original_topic"], audit["original_partition"], audit["original_offset"]) == (
        TOPIC,
        original.partition,
        original.offset,
    )
    assert (audit["redriven_partition"], audit["redriven_offset"]) == (copy.partition, copy.offset)
    table = ok(await carebridge(bootstrap, "dlq", "audit", "--id", str(event.event_id)))
    assert "alice" in table and str(event.event_id) in table and letter["id"] in table
    listed = ok(await carebridge(bootstrap, "dlq", "list", "--group", group))
    assert letter["id"] in listed and "by alice" in listed


def letter_headers(envelope_headers: list[tuple[str, bytes]], group: str, offset: int) -> Any:
    return [
        *envelope_headers,
        (DLQ_ORIGINAL_TOPIC, TOPIC.encode()),
        (DLQ_ORIGINAL_PARTITION, b"0"),
        (DLQ_ORIGINAL_OFFSET, str(offset).encode()),
        (DLQ_CONSUMER_GROUP, group.encode()),
        (DLQ_ERROR, b"ZeroDivisionError: plan version ratio"),
        (DLQ_ATTEMPTS, b"5"),
    ]


async def test_list_show_and_redrive_of_one_letter_by_its_id(
    stack_endpoints: StackEndpoints, topics: None
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    group, other_group = f"ops-id-{uuid.uuid4().hex[:8]}", f"ops-other-{uuid.uuid4().hex[:8]}"
    first, second = plan_update(patient, 1), plan_update(patient, 2)
    newer = json.loads(plan_update(patient, 3).to_bytes())
    newer["version"] = 2
    newer["data"]["summary_ref"] = "SENTINEL-FIELD-VALUE"
    letters = [
        (first.to_bytes(), kafka_headers(first), group),
        (second.to_bytes(), kafka_headers(second), group),
        (b'{"patient": "SENTINEL-RAW-VALUE"', [], group),
        (json.dumps(newer).encode(), [], group),
        (first.to_bytes(), kafka_headers(first), other_group),
    ]
    for n, (value, headers, owner) in enumerate(letters):
        await produce_raw(
            bootstrap, DLQ, value, key=patient.encode(), headers=letter_headers(headers, owner, n)
        )

    listed = json_lines(await carebridge(bootstrap, "dlq", "list", "--group", group, "--json"))
    assert [row["parse_status"] for row in listed] == [
        "parsed",
        "parsed",
        "invalid",
        "unknown_newer_version",
    ]
    assert [row["event_id"] for row in listed[:2]] == [str(first.event_id), str(second.event_id)]
    assert [row["event_type"] for row in listed] == [
        "CarePlanUpdated v1",
        "CarePlanUpdated v1",
        None,
        "CarePlanUpdated v2",
    ]
    ids = [row["id"] for row in listed]
    table = ok(await carebridge(bootstrap, "dlq", "list", "--group", group, "--topic", DLQ))
    assert all(i in table for i in ids) and "ZeroDivisionError: plan version ratio" in table
    summary = ok(await carebridge(bootstrap, "dlq", "list", "--summary", "--topic", TOPIC))
    [row] = [line for line in summary.splitlines() if group in line]
    assert [cell.strip() for cell in row.split("│")[3:7]] == ["4", "2", "2", "0"]

    shown = ok(await carebridge(bootstrap, "dlq", "show", "--id", ids[0]))
    assert str(first.event_id) in shown and '"changed_sections"' in shown  # a valid event: data
    assert "dlq-consumer-group" in shown and "ZeroDivisionError: plan version ratio" in shown
    assert f"carebridge dlq redrive --id {ids[0]}" in shown
    both = ok(await carebridge(bootstrap, "dlq", "show", "--id", str(first.event_id)))
    assert group in both and other_group in both  # every letter of the event
    broken = ok(await carebridge(bootstrap, "dlq", "show", "--id", ids[2]))
    assert "not a valid envelope" in broken and "SENTINEL-RAW-VALUE" not in broken
    raw = ok(await carebridge(bootstrap, "dlq", "show", "--id", ids[2], "--raw"))
    assert "SENTINEL-RAW-VALUE" in raw
    future = ok(await carebridge(bootstrap, "dlq", "show", "--id", ids[3]))
    assert "unknown version 2" in future and "summary_ref" in future
    assert "SENTINEL-FIELD-VALUE" not in future  # unvalidated data: field names only

    one = ok(
        await carebridge(bootstrap, "dlq", "redrive", "--id", ids[0], "--operator", "carol", "-y")
    )
    assert "Redriven 1 letter as 1 event" in one
    rest = ok(await carebridge(bootstrap, "dlq", "redrive", "--group", group, "-y"))
    assert "Redriven 1 letter as 1 event" in rest
    assert "Skipping 2 letters that do not parse" in rest and "1 letter already redriven" in rest
    again = ok(await carebridge(bootstrap, "dlq", "redrive", "--id", ids[0], "-y"))
    assert "Nothing to redrive." in again

    back = await read_topic(bootstrap, TOPIC, where=lambda r: r.key == patient.encode())
    assert [(event_id_of(r), r.headers[REDRIVEN_FROM].decode()) for r in back] == [
        (first.event_id, ids[0]),
        (second.event_id, ids[1]),
    ]
    audits = json_lines(await carebridge(bootstrap, "dlq", "audit", "--group", group, "--json"))
    assert [a["letter"] for a in audits] == [ids[0], ids[1]]
    assert audits[0]["operator"] == "carol" and audits[1]["run_id"] != audits[0]["run_id"]


async def test_expected_errors_say_what_to_do(stack_endpoints: StackEndpoints) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    runner = CliRunner()
    unset = runner.invoke(app, ["dlq", "list"], env={"KAFKA_BOOTSTRAP_SERVERS": None})
    assert unset.exit_code == 2 and "KAFKA_BOOTSTRAP_SERVERS is not set" in unset.stderr
    unknown = await carebridge(bootstrap, "dlq", "list", "--topic", "carebridge.nowhere")
    assert unknown.exit_code == 2 and "unknown topic 'carebridge.nowhere'" in unknown.stderr
    assert TOPIC in unknown.stderr  # the known topics are listed
    missing = await carebridge(bootstrap, "dlq", "show", "--id", f"{DLQ}:0:999999999")
    assert missing.exit_code == 2 and "no dead letter" in missing.stderr
    nobody = await carebridge(bootstrap, "dlq", "show", "--id", str(uuid.uuid4()), "-t", TOPIC)
    assert nobody.exit_code == 2 and "no dead letter" in nobody.stderr
    garbage = await carebridge(bootstrap, "dlq", "show", "--id", "not-an-id")
    assert garbage.exit_code == 2 and "neither a letter id" in garbage.stderr
    unscoped = await carebridge(bootstrap, "dlq", "redrive", "--yes")
    assert unscoped.exit_code == 2 and "--group" in unscoped.stderr
    down = await carebridge("127.0.0.1:1", "dlq", "list")
    assert down.exit_code == 2 and "cannot use Kafka at 127.0.0.1:1" in down.stderr
    assert "refused the connection" in down.stderr and "make stack-up" in down.stderr
    assert down.stdout == ""


async def test_letters_of_one_event_from_two_groups_go_back_as_one_copy(
    stack_endpoints: StackEndpoints, topics: None
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    patient = f"p-{uuid.uuid4()}"
    event = plan_update(patient)
    groups = [f"ops-twice-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for group in groups:
        await produce_raw(
            bootstrap,
            DLQ,
            event.to_bytes(),
            key=patient.encode(),
            headers=letter_headers(kafka_headers(event), group, 0),
        )
    out = ok(await carebridge(bootstrap, "dlq", "redrive", "--id", str(event.event_id), "-y"))
    assert "Redriven 2 letters as 1 event" in out
    back = await read_topic(bootstrap, TOPIC, where=lambda r: r.key == patient.encode())
    assert len(back) == 1
    audits = json_lines(
        await carebridge(bootstrap, "dlq", "audit", "--id", str(event.event_id), "--json")
    )
    assert sorted(a["consumer_group"] for a in audits) == sorted(groups)
    assert {(a["redriven_partition"], a["redriven_offset"]) for a in audits} == {
        (back[0].partition, back[0].offset)
    }
