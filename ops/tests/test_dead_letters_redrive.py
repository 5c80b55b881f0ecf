"""Redrive against real Kafka: two redrives at once still send each letter back once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from carebridge_contracts import Topic, dlq_topic
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.testing import produce_raw, sample_assessment, wrap
from carebridge_ops import dead_letters as dlq
from carebridge_shared.consumer import DLQ_CONSUMER_GROUP, DLQ_ORIGINAL_TOPIC
from carebridge_shared.kafka import ensure_topics, env_security

pytestmark = pytest.mark.integration

TOPIC = str(Topic.ASSESSMENTS)


async def test_concurrent_redrives_commit_each_letter_once(
    stack_endpoints: StackEndpoints,
) -> None:
    bootstrap = stack_endpoints.kafka_bootstrap
    await ensure_topics(bootstrap, [TOPIC, dlq_topic(TOPIC)], partitions=3, replication_factor=1)
    patient = f"p-{uuid.uuid4()}"
    group = f"race-{uuid.uuid4().hex[:8]}"
    events = [wrap(sample_assessment(patient), patient, sequence=n) for n in (1, 2, 3)]
    for envelope in events:
        headers = [(DLQ_ORIGINAL_TOPIC, TOPIC.encode()), (DLQ_CONSUMER_GROUP, group.encode())]
        await produce_raw(
            bootstrap, dlq_topic(TOPIC), envelope.to_bytes(), key=patient.encode(), headers=headers
        )
    selection = dlq.Selection((dlq_topic(TOPIC),), group=group)
    planned = await dlq.plan_redrive(bootstrap, selection)
    assert len(planned.selected) == 3
    # Both from the same plan. Either they overlap and the one that starts its producer later
    # fences the other (whose open transaction is aborted), or one runs first and the other
    # finds every letter in the ledger; in both cases each letter goes back once.
    transactional_id = f"test-redrive-{uuid.uuid4().hex[:8]}"
    outcomes = await asyncio.gather(
        *(
            dlq.execute(bootstrap, planned, operator=name, transactional_id=transactional_id)
            for name in ("ann", "ben")
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        assert isinstance(outcome, dlq.RedriveResult | dlq.DlqError), repr(outcome)

    ledger = [a for a in await dlq.read_audit(bootstrap) if a.consumer_group == group]
    assert sorted(a.event_id for a in ledger) == sorted(e.event_id for e in events)
    committed = await dlq._scan(
        bootstrap, [TOPIC], isolation_level="read_committed", security=env_security()
    )
    copies = [r for r in committed if r.key == patient.encode()]
    assert len(copies) == 3, "each event committed back exactly once"
    assert {(a.redriven_partition, a.redriven_offset) for a in ledger} == {
        (r.partition, r.offset) for r in copies
    }
    again = await dlq.plan_redrive(bootstrap, selection)
    assert again.selected == [] and len(again.already_redriven) == 3
