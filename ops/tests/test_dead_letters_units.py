"""Dead-letter selection and identification without a broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from carebridge_contracts import Topic, dlq_topic
from carebridge_devstack.testing import sample_assessment, wrap
from carebridge_ops.dead_letters import (
    DeadLetter,
    LetterId,
    RedriveAudit,
    Selection,
    UnknownTopic,
    dead_letter_topics,
    plan,
    resolve_dlq_topic,
)
from carebridge_shared.consumer import DLQ_CONSUMER_GROUP, DLQ_ORIGINAL_TOPIC

TOPIC = str(Topic.ASSESSMENTS)
DLQ = dlq_topic(TOPIC)


def letter(offset: int, value: bytes, group: str = "g", original: str = TOPIC) -> DeadLetter:
    headers = ((DLQ_ORIGINAL_TOPIC, original.encode()), (DLQ_CONSUMER_GROUP, group.encode()))
    return DeadLetter(LetterId(DLQ, 0, offset), b"k", value, headers, datetime.now(UTC))


def audit_of(dead: DeadLetter) -> RedriveAudit:
    return RedriveAudit(
        audit_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        at=datetime.now(UTC),
        operator="ann",
        host="h",
        letter=str(dead.id),
        dlq_topic=DLQ,
        dlq_partition=0,
        dlq_offset=dead.id.offset,
        consumer_group="g",
        event_id=uuid.uuid4(),
        event_type="AssessmentCompleted",
        event_version=1,
        original_topic=TOPIC,
        original_partition=0,
        original_offset=0,
        redriven_partition=0,
        redriven_offset=9,
    )


def valid() -> bytes:
    return wrap(sample_assessment("p-1"), "p-1").to_bytes()


def test_letter_ids_round_trip_and_reject_what_is_not_one() -> None:
    ident = LetterId(DLQ, 2, 41)
    assert LetterId.parse(str(ident)) == ident
    for text in ("", DLQ, f"{TOPIC}:0:1", f"{DLQ}:x:1", f"{DLQ}:0:-1", str(uuid.uuid4())):
        assert LetterId.parse(text) is None, text


def test_topics_resolve_from_the_registry_only() -> None:
    assert resolve_dlq_topic(TOPIC) == DLQ == resolve_dlq_topic(DLQ)
    assert set(dead_letter_topics()) == {dlq_topic(t) for t in Topic}
    with pytest.raises(UnknownTopic, match=r"Known topics: .*carebridge"):
        resolve_dlq_topic("carebridge.nowhere")


def test_plan_sorts_letters_into_redrive_invalid_done_and_others() -> None:
    good, again, poison = letter(0, valid()), letter(1, valid()), letter(2, b"{nope")
    other = letter(3, valid(), group="other")
    elsewhere = letter(4, valid(), original=str(Topic.APPOINTMENTS))
    planned = plan(
        [good, again, poison, other, elsewhere], Selection((DLQ,), group="g"), [audit_of(again)]
    )
    assert planned.selected == [good]
    assert planned.invalid == [poison, elsewhere]
    assert [d for d, _ in planned.already_redriven] == [again]
    assert planned.not_selected == 1
    assert elsewhere.problem is not None and "does not match" in elsewhere.problem


def test_selection_by_letter_or_event_id() -> None:
    first, second = letter(0, valid()), letter(1, valid())
    by_letter = plan([first, second], Selection((DLQ,), letter=second.id), [])
    assert by_letter.selected == [second] and by_letter.not_selected == 1
    event_id = uuid.UUID(first.event_id or "")
    by_event = plan([first, second], Selection((DLQ,), event_id=event_id), [])
    assert by_event.selected == [first]


def test_a_header_without_a_value_is_read_as_absent() -> None:
    dead = DeadLetter(
        LetterId(DLQ, 0, 7), None, b"{nope", (("ce-id", None), ("ce-type", None)), datetime.now(UTC)
    )
    assert dead.event_id is None and dead.event_type is None and dead.consumer_group is None
    assert not dead.redrivable
    assert not Selection((DLQ,), event_id=uuid.uuid4()).matches(dead)
