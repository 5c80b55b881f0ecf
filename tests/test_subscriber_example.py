"""docs/examples/subscriber.py against real Kafka, so the subscriber docs cannot rot."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from carebridge_contracts import CarePlanUpdated, Envelope, Topic, kafka_headers
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.testing import produce_raw, wrap
from carebridge_shared.kafka import ensure_topics, security_options

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "subscriber.py"


def plan_update(patient: str, sequence: int) -> Envelope:
    event = CarePlanUpdated(
        patient_id=patient,
        plan_version=sequence,
        changed_sections=["goals"],
        author_id="clin-7",
        author_role="therapist",
    )
    return wrap(event, patient, sequence=sequence)


async def publish(bootstrap: str, topic: str, envelope: Envelope | bytes) -> None:
    if isinstance(envelope, Envelope):
        value, headers = envelope.to_bytes(), kafka_headers(envelope)
    else:
        value, headers = envelope, []
    await produce_raw(bootstrap, topic, value, key=b"p-example", headers=headers)


async def subscribe(bootstrap: str, group: str, topic: str, max_events: int) -> list[str]:
    command = [sys.executable, str(EXAMPLE), "--bootstrap", bootstrap, "--group", group,
               "--topic", topic, "--max-events", str(max_events)]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"stopped after {max_events} messages" in done.stderr
    return done.stdout.splitlines()


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **security_options())
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


async def test_the_example_subscriber_reports_duplicates_gaps_and_newer_versions(
    stack_endpoints: StackEndpoints, unique_topic_prefix: str
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    topic = f"{unique_topic_prefix}{Topic.CARE_PLANS}"  # a fresh stream: sequences from 1
    await ensure_topics(bootstrap, [topic], partitions=1, replication_factor=1)
    group = f"example-{uuid.uuid4().hex[:8]}"
    first, second, fourth, sixth, seventh = (plan_update("p-example", n) for n in (1, 2, 4, 6, 7))
    newer = json.loads(plan_update("p-example", 5).to_bytes())
    newer["version"] = 2
    extended = json.loads(sixth.to_bytes())
    extended["data"]["room"] = "b-12"  # an optional field added within v1
    try:
        for message in (first, first, second, fourth, json.dumps(newer).encode(), b"{oops"):
            await publish(bootstrap, topic, message)
        await publish(bootstrap, topic, json.dumps(extended).encode())

        lines = await subscribe(bootstrap, group, topic, max_events=7)
        assert len(lines) == 7, lines
        assert f"event_id={first.event_id}" in lines[0] and lines[0].endswith(" ok")
        assert "seq=1" in lines[0] and "CarePlanUpdated v1" in lines[0]
        assert "DUPLICATE event_id already handled" in lines[1]
        assert "seq=2" in lines[2] and lines[2].endswith(" ok")
        assert "seq=4" in lines[3] and "GAP: missing sequence 3" in lines[3]
        assert lines[3].endswith(" ok")
        assert "CarePlanUpdated v2" in lines[4] and "seq=5" in lines[4]
        assert "UNKNOWN NEWER VERSION (this subscriber knows v1)" in lines[4]
        assert "INVALID" in lines[5] and "InvalidEnvelope" in lines[5]
        assert "seq=6" in lines[6] and "GAP" not in lines[6], "v2 kept the sequence count"
        assert lines[6].endswith(" ok (ignored new fields: room)")
        assert await committed(bootstrap, group, topic) == 7, "offsets committed after handling"

        # The group resumes after what it committed: only the new event comes.
        await publish(bootstrap, topic, seventh)
        [line] = await subscribe(bootstrap, group, topic, max_events=1)
        assert f"event_id={seventh.event_id}" in line and "seq=7" in line
        # A restarted process starts its gap detector empty; from the beginning it expects 1.
        assert "GAP: missing sequence 1-6" in line
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security_options())
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
