"""tail, replay, offsets and projection rebuild against the four services running as processes
on the real Kafka and PostgreSQL, after a few patients went through the journey.

The services consume with groups of this module, set with `carebridge replay` to the module's
start time before they start (the replay the command exists for). Rebuilds compare against
the live state after the services stopped, so events other test runs publish on the shared
topics meanwhile cannot make the live state move under the comparison.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from typer.testing import CliRunner, Result

from carebridge_contracts import Envelope, Topic
from carebridge_contracts.services import SERVICES
from carebridge_devstack.demo import CareClient, wait_for_mail, wait_until
from carebridge_devstack.endpoints import StackEndpoints, create_database, drop_database
from carebridge_devstack.system import LocalSystem, SystemPorts
from carebridge_devstack.testing import (
    kafka_login_env,
    produce,
    produce_raw,
    read_topic,
    sample_assessment,
    wrap,
)
from carebridge_ops import kafkaio
from carebridge_ops.cli import app
from carebridge_ops.replay import REPLAYED_BY, REPLAYED_FROM
from carebridge_ops.services import load
from carebridge_shared.kafka import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.journey]

CAREBRIDGE_CLI = str(Path(sys.executable).with_name("carebridge"))


@dataclass
class Ops:
    system: LocalSystem
    client: CareClient
    bootstrap: str
    database_url: str
    run: str
    started: datetime  # the window every replay and rebuild here starts at
    groups: dict[str, str]  # the live services' consumer groups
    patients: dict[str, str] = field(default_factory=dict)
    middle: datetime | None = None  # after the first patient's journey, before the second's

    def carebridge(self, *args: str) -> Result:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DATABASE_URL": self.database_url,
            "COLUMNS": "250",
        }
        return CliRunner().invoke(app, list(args), env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result.stdout


def lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).splitlines() if line.strip()]


def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    async def fetch() -> dict[TopicPartition, int]:
        async with kafkaio.admin_client(bootstrap) as admin:
            return (await kafkaio.describe_group(admin, group)).committed

    return asyncio.run(fetch())


def drained(ops: Ops, service: str) -> bool:
    """The live group committed everything published so far on the topics it consumes."""

    async def behind() -> int:
        async with kafkaio.admin_client(ops.bootstrap) as admin:
            partitions = await kafkaio.partitions_of(admin, load(service).consumed_topics())
            done = (await kafkaio.describe_group(admin, ops.groups[service])).committed
        async with kafkaio.reader(ops.bootstrap) as consumer:
            ends = await kafkaio.ends(consumer, partitions)
        return sum(max(ends[tp] - done.get(tp, 0), 0) for tp in partitions)

    return asyncio.run(behind()) == 0


@pytest.fixture(scope="module")
def ops(stack_endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    database_url = create_database(stack_endpoints.database_url, prefix="ops_")
    endpoints = StackEndpoints(
        stack_endpoints.kafka_bootstrap, database_url, stack_endpoints.source
    )
    run = uuid.uuid4().hex[:8]
    groups = {name: f"{name}-ops-{run}" for name in SERVICES}
    started = datetime.now(UTC) - timedelta(seconds=1)
    local = LocalSystem(
        endpoints,
        tmp_path_factory.mktemp("system"),
        ports=SystemPorts.free(),
        extra_env={
            name: {"CAREBRIDGE_CONSUMER_GROUP": groups[name]}
            | ({"CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START": "true"} if name == "booking" else {})
            for name in SERVICES
        },
    )
    client = CareClient({name: local.url(name) for name in SERVICES})
    ops = Ops(local, client, stack_endpoints.kafka_bootstrap, database_url, run, started, groups)
    try:
        for name in SERVICES:  # fresh groups that start at `started`, not at the topics' start
            ok(ops.carebridge(
                "replay", "--group", groups[name], "--from", started.isoformat(),
                "--service", name, "--yes",
            ))  # fmt: skip
        local.start(timeout=180)
        yield ops
    finally:
        local.stop()
        drop_database(database_url)


@pytest.fixture(scope="module")
def journeys(ops: Ops) -> Ops:
    """Three patients: a collaboration (intake, visit, psychiatrist's referral, consent, care
    team), a plain booking, and an imminent-risk intake that alerts the on-call clinician."""
    client, mailbox = ops.client, ops.system.mailbox
    collab, booked, urgent = (f"ops-{name}-{uuid.uuid4().hex[:8]}" for name in "abc")
    ops.patients = {"collab": collab, "booked": booked, "urgent": urgent}

    client.set_contact("patient", collab, f"{collab}@patients.example")
    client.assess(collab, state="NY", therapy_interest=True)
    client.wait_eligible(collab)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    psychiatrist = slot["clinician_id"]
    client.set_contact("clinician", psychiatrist, f"{psychiatrist}.{collab}@clinicians.example")
    visit = client.book(collab, slot)
    wait_for_mail(mailbox, f"{collab}@patients.example", "the confirmation")
    client.complete(visit["id"])
    client.refer(collab, psychiatrist)
    client.grant_consent(collab)
    client.wait_care_team(collab)
    wait_for_mail(mailbox, f"{collab}@patients.example", "the therapist-match notice", count=2)
    ops.middle = datetime.now(UTC)

    client.set_contact("patient", booked, f"{booked}@patients.example")
    client.assess(booked, state="NY", therapy_interest=False)
    client.wait_eligible(booked)
    slot = client.first_slot(
        "NY", "initial_psychiatric_evaluation", after=client.notification_now()
    )
    client.set_contact(
        "clinician", slot["clinician_id"], f"{slot['clinician_id']}.{booked}@c.example"
    )
    client.book(booked, slot)
    wait_for_mail(mailbox, f"{booked}@patients.example", "the confirmation")
    wait_for_mail(mailbox, f"{slot['clinician_id']}.{booked}@c.example", "the clinician's")

    client.set_on_call_route(
        f"on-call.{urgent}@clinicians.example", f"escalation.{urgent}@clinicians.example"
    )
    client.assess(urgent, state="NY", cssrs={
        "q1_wish_to_be_dead": True, "q2_suicidal_thoughts": True, "q3_method": True,
        "q4_intent": True, "q5_plan": False, "q6_behaviour": False,
    })  # fmt: skip
    wait_for_mail(mailbox, f"on-call.{urgent}@clinicians.example", "the urgent review alert")
    for name in SERVICES:
        wait_until(f"{name} to consume everything", partial(drained, ops, name), 60)
    return ops


@pytest.fixture(scope="module")
def stopped(journeys: Ops) -> Ops:
    """The services stopped (SIGTERM: in-flight events finish and commit), the SMTP sink still
    up: the live state is what each group's committed offsets say it applied."""
    for name in SERVICES:
        # uvicorn exits by re-raising SIGTERM once its shutdown finished
        code = journeys.system.group[name].stop(30)
        assert code in (0, -signal.SIGTERM), journeys.system.group.tail(name)
    return journeys


def test_groups_with_members_are_never_moved(journeys: Ops, tmp_path: Path) -> None:
    ops, group = journeys, journeys.groups["booking"]
    before = committed(ops.bootstrap, group)
    refused = ops.carebridge(
        "replay", "--group", group, "--from", ops.started.isoformat(), "--service", "booking",
        "--reset-existing", "--yes",
    )  # fmt: skip
    assert refused.exit_code == 2, refused.output
    assert "active member" in refused.stderr
    assert f"CAREBRIDGE_CONSUMER_GROUP={group}" in refused.stderr

    saved = tmp_path / "offsets.csv"
    ok(ops.carebridge("offsets", "export", "--group", group, "--output", str(saved)))
    refused = ops.carebridge("offsets", "import", "--group", group, str(saved), "--yes")
    assert refused.exit_code == 2 and "active member" in refused.stderr
    assert committed(ops.bootstrap, group) == before


def test_a_replayed_window_rebuilds_each_service_equal_to_live_and_sends_nothing(
    stopped: Ops,
) -> None:
    ops, mailbox = stopped, stopped.system.mailbox
    sent_before = sorted((str(m.message["Message-ID"]), tuple(m.to)) for m in mailbox.messages())
    for service in SERVICES:
        fresh = f"{service}-rebuild-{ops.run}"
        ok(ops.carebridge(
            "replay", "--group", fresh, "--from", ops.started.isoformat(), "--service", service,
            "--yes",
        ))  # fmt: skip
        args = ["projection", "rebuild", service, "--group", fresh]
        args += ["--until-group", ops.groups[service]]
        output = ok(ops.carebridge(*args, *(["--keep"] if service == "notification" else [])))
        assert "EQUAL: the rebuilt projection matches the live state" in output, output
        assert committed(ops.bootstrap, fresh) == committed(ops.bootstrap, ops.groups[service])

    kept = re.search(r"kept schema (notification_rebuild_\w+)", output)
    assert kept, output
    rebuilt, live = asyncio.run(_scratch_deliveries(ops.database_url, kept.group(1)))
    assert len(rebuilt) == live
    assert {r["patient_id"] for r in rebuilt} >= set(ops.patients.values())
    # never dispatched: queued, or cancelled by a later event (a visit completed)
    assert {r["status"] for r in rebuilt} <= {"pending", "cancelled"}
    assert {(r["attempts"], r["sent_at"]) for r in rebuilt} == {(0, None)}

    sent_after = sorted((str(m.message["Message-ID"]), tuple(m.to)) for m in mailbox.messages())
    assert sent_after == sent_before, "a rebuild sends nothing"
    copies = Counter(message_id for message_id, _ in sent_after)
    assert copies and set(copies.values()) == {1}, "every notification was sent once"


def test_a_changed_live_row_makes_the_rebuild_not_equal(stopped: Ops) -> None:
    ops = stopped
    booked, urgent = ops.patients["booked"], ops.patients["urgent"]
    asyncio.run(_change_live_eligibility(ops.database_url, booked, urgent))
    result = ops.carebridge(
        "projection", "rebuild", "booking", "--from", ops.started.isoformat(),
        "--until-group", ops.groups["booking"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "NOT EQUAL" in result.stdout
    assert f"patient_eligibility: extra in the rebuild: patient_id={booked}" in result.stdout
    assert (
        f"patient_eligibility: differs at patient_id={urgent}: urgent_review_required"
        " live=False rebuilt=True"
    ) in result.stdout
    leftovers = asyncio.run(_scratch_schemas(ops.database_url))
    assert leftovers == [], "the scratch schema is dropped without --keep"


async def _scratch_deliveries(database_url: str, scratch: str) -> tuple[list[asyncpg.Record], int]:
    """The rebuilt deliveries (the scratch schema is dropped after), and the live count."""
    conn = await asyncpg.connect(database_url)
    try:
        rebuilt = await conn.fetch(
            f"SELECT patient_id, status, attempts, sent_at FROM {scratch}.deliveries"
        )
        live: int = await conn.fetchval("SELECT count(*) FROM notification.deliveries")
        await conn.execute(f"DROP SCHEMA {scratch} CASCADE")
        return rebuilt, live
    finally:
        await conn.close()


async def _change_live_eligibility(database_url: str, deleted: str, altered: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM booking.patient_eligibility WHERE patient_id = $1", deleted)
        await conn.execute(
            "UPDATE booking.patient_eligibility SET urgent_review_required = false"
            " WHERE patient_id = $1",
            altered,
        )
    finally:
        await conn.close()


async def _scratch_schemas(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE '%\\_rebuild\\_%'"
        )
        return [r["nspname"] for r in rows]
    finally:
        await conn.close()


def test_a_window_copied_into_a_topic_is_marked_and_filtered(
    journeys: Ops, unique_topic_prefix: str
) -> None:
    ops = journeys
    assert ops.middle is not None
    target = f"{unique_topic_prefix}replay-copy"
    asyncio.run(ensure_topics(ops.bootstrap, [target], partitions=3, replication_factor=1))
    window = [
        "replay", "--to-topic", target, "--from", ops.started.isoformat(),
        "--to", ops.middle.isoformat(), "--type", "AppointmentBooked",
    ]  # fmt: skip
    planned = ok(ops.carebridge(*window, "--dry-run"))
    assert "start offset" in planned and "dry run: nothing was copied" in planned
    assert asyncio.run(read_topic(ops.bootstrap, target)) == []

    output = ok(ops.carebridge(*window, "--rate", "500/s", "--yes"))
    found = re.search(r"copied (\d+) record\(s\).*carebridge-replay:(\S+):(\w+)\.", output)
    assert found, output
    copies = asyncio.run(read_topic(ops.bootstrap, target))
    assert len(copies) == int(found.group(1)) > 0
    envelopes = [Envelope.from_bytes(r.value) for r in copies]
    assert {e.type for e in envelopes} == {"AppointmentBooked"}
    assert {r.headers[REPLAYED_BY] for r in copies} == {
        f"carebridge-replay:{found.group(2)}:{found.group(3)}".encode()
    }
    sources = {r.headers[REPLAYED_FROM].decode() for r in copies}
    assert all(s.startswith(f"{Topic.APPOINTMENTS}:") for s in sources)
    subjects = {e.subject for e in envelopes}
    assert ops.patients["collab"] in subjects, "booked inside the window"
    assert ops.patients["booked"] not in subjects, "booked after --to"
    booked = lines(ops.carebridge(
        "events", "tail", "--no-follow", "--from", ops.started.isoformat(),
        "--topic", str(Topic.APPOINTMENTS), "--type", "AppointmentBooked",
    ))  # fmt: skip
    assert {str(e.event_id) for e in envelopes} <= {line["event_id"] for line in booked}


def test_a_dry_run_moves_no_group(journeys: Ops) -> None:
    ops, fresh = journeys, f"dry-run-{journeys.run}"
    output = ok(ops.carebridge(
        "replay", "--group", fresh, "--from", ops.started.isoformat(), "--service", "booking",
        "--dry-run",
    ))  # fmt: skip
    assert f"replay into group {fresh}" in output and "dry run: nothing was changed" in output
    assert str(Topic.ASSESSMENTS) in output and "start offset" in output
    assert committed(ops.bootstrap, fresh) == {}


def test_offsets_round_trip_through_csv(journeys: Ops, tmp_path: Path) -> None:
    ops, copy = journeys, f"copy-{journeys.run}"
    saved = tmp_path / "live.csv"
    ok(ops.carebridge("offsets", "export", "--group", ops.groups["referral"], "-o", str(saved)))
    assert ok(ops.carebridge("offsets", "export", "--group", ops.groups["referral"])) == (
        saved.read_text()
    )
    ok(ops.carebridge("offsets", "import", "--group", copy, str(saved), "--yes"))
    again = ok(ops.carebridge("offsets", "export", "--group", copy))
    assert again == saved.read_text().replace(f"{ops.groups['referral']},", f"{copy},")
    assert len(again.splitlines()) > 1


def test_tail_filters_by_patient_type_and_topic(journeys: Ops) -> None:
    ops, collab = journeys, journeys.patients["collab"]
    since = ["events", "tail", "--no-follow", "--from", ops.started.isoformat()]
    about = lines(ops.carebridge(*since, "--patient", collab))
    assert {line["key"] for line in about} == {collab}
    assert {
        "AssessmentCompleted", "AppointmentBooked", "AppointmentCompleted", "TherapistRequested",
        "TherapistMatched", "CareTeamFormed", "ConsentGranted", "NotificationSent",
    } <= {line["type"] for line in about}  # fmt: skip
    assert all({"topic", "partition", "offset", "event_id", "sequence"} <= set(x) for x in about)
    [booking] = lines(ops.carebridge(*since, "--patient", collab, "--type", "AppointmentBooked"))
    assert booking["data"]["patient_id"] == collab and booking["topic"] == str(Topic.APPOINTMENTS)
    referrals = lines(ops.carebridge(*since, "--patient", collab, "--topic", str(Topic.REFERRALS)))
    assert referrals and {line["topic"] for line in referrals} == {str(Topic.REFERRALS)}


def test_tail_reports_records_that_do_not_parse_and_follows(
    stack_endpoints: StackEndpoints, unique_topic_prefix: str
) -> None:
    bootstrap, topic = stack_endpoints.kafka_bootstrap, f"{unique_topic_prefix}tail"
    asyncio.run(ensure_topics(bootstrap, [topic], partitions=1, replication_factor=1))
    first = wrap(sample_assessment("p-tail"), "p-tail")
    asyncio.run(produce(bootstrap, first, topic=topic))
    asyncio.run(produce_raw(bootstrap, topic, b"not json", key=b"p-tail"))
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["events", "tail", "--topic", topic, "--no-follow"], env=env)
    read = lines(result)
    assert [line.get("event_id") for line in read] == [str(first.event_id), None]
    assert read[1]["error"] == "not an event envelope" and read[1]["offset"] == 1

    follower = subprocess.Popen(
        [CAREBRIDGE_CLI, "events", "tail", "--topic", topic, "--from", "-1h"],
        stdout=subprocess.PIPE,
        env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PATH": "", **kafka_login_env()},
    )
    seen: list[dict[str, Any]] = []
    assert follower.stdout is not None
    stdout = follower.stdout
    threading.Thread(
        target=lambda: seen.extend(json.loads(raw) for raw in iter(stdout.readline, b"")),
        daemon=True,
    ).start()
    try:
        wait_until("the records so far", lambda: len(seen) >= 2, 30)
        later = wrap(sample_assessment("p-tail"), "p-tail", sequence=2)
        asyncio.run(produce(bootstrap, later, topic=topic))
        wait_until("the record published while following", lambda: len(seen) >= 3, 30)
        assert seen[2]["event_id"] == str(later.event_id) and follower.poll() is None
    finally:
        follower.terminate()
        follower.wait(timeout=30)


def test_an_existing_group_without_members_is_only_rewound_on_request(stopped: Ops) -> None:
    ops, group = stopped, stopped.groups["intake"]
    assert ops.middle is not None
    before = committed(ops.bootstrap, group)
    replay = ["replay", "--group", group, "--service", "intake", "--yes", "--from"]
    refused = ops.carebridge(*replay, ops.started.isoformat())
    assert refused.exit_code == 2 and "already exists" in refused.stderr
    assert "--reset-existing" in refused.stderr
    assert committed(ops.bootstrap, group) == before

    ok(ops.carebridge(*replay, ops.started.isoformat(), "--reset-existing"))
    rewound = committed(ops.bootstrap, group)
    assert rewound.keys() == before.keys()
    assert all(rewound[tp] <= before[tp] for tp in before)
    assert any(rewound[tp] < before[tp] for tp in before), "the window's records are re-read"

    # now behind: moving it to a later time would skip what it has not processed yet
    forward = ops.carebridge(*replay, ops.middle.isoformat(), "--reset-existing")
    assert forward.exit_code == 2 and "would skip records it never processed" in forward.stderr
    assert committed(ops.bootstrap, group) == rewound
