"""Rules of tail, replay, offsets and projection rebuild that need no Kafka or PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from typer.testing import CliRunner

from carebridge_contracts import Topic, kafka_headers
from carebridge_devstack.testing import sample_assessment, wrap
from carebridge_ops.cli import app
from carebridge_ops.console import EXIT_ERROR, OpsError
from carebridge_ops.events import TailFilter, record_line
from carebridge_ops.offsets import OffsetRow, from_csv, to_csv
from carebridge_ops.replay import ReplayRequest
from carebridge_ops.services import load
from carebridge_ops.timespec import parse_time

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def request(**overrides: object) -> ReplayRequest:
    options: dict[str, object] = {
        "group": "g",
        "to_topic": None,
        "start": "-1h",
        "end": None,
        "types": [],
        "topics": [],
        "service": None,
        "rate": None,
        "reset_existing": False,
    }
    options.update(overrides)
    return ReplayRequest.check(**options)  # type: ignore[arg-type]


# --- times --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T09:30:00Z", datetime(2026, 11, 27, 9, 30, tzinfo=UTC)),
        ("2026-11-27T10:30:00+01:00", datetime(2026, 11, 27, 9, 30, tzinfo=UTC)),
        ("2026-11-27T09:30:00", datetime(2026, 11, 27, 9, 30, tzinfo=UTC)),  # naive: UTC
        ("-15m", NOW - timedelta(minutes=15)),
        ("-2h", NOW - timedelta(hours=2)),
        ("-7d", NOW - timedelta(days=7)),
        ("-30s", NOW - timedelta(seconds=30)),
        ("-1w", NOW - timedelta(weeks=1)),
        ("now", NOW),
    ],
)
def test_times_are_iso_or_relative(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15m", "-15x", "+15m", ""])
def test_an_unreadable_time_says_which_forms_work(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO-8601.*-15m"):
        parse_time(text, now=NOW)


# --- replay options -----------------------------------------------------------------------


def test_replay_needs_exactly_one_target() -> None:
    with pytest.raises(OpsError, match=r"--group G .* or --to-topic X"):
        request(group=None)
    with pytest.raises(OpsError, match="not both"):
        request(to_topic="copy")


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("end", "-5m", "cannot be told where to stop"),
        ("types", ["AppointmentBooked"], "cannot skip event types"),
        ("rate", "10/s", "its own pace"),
    ],
)
def test_a_group_replay_refuses_what_offsets_cannot_express(
    option: str, value: object, why: str
) -> None:
    with pytest.raises(OpsError, match=f"only with --to-topic.*{why}.*--to-topic"):
        request(**{option: value})


def test_reset_existing_belongs_to_group_replays() -> None:
    with pytest.raises(OpsError, match="--reset-existing works only with --group"):
        request(group=None, to_topic="copy", reset_existing=True)


def test_a_copy_never_goes_to_a_topic_services_consume() -> None:
    for target in (str(Topic.APPOINTMENTS), f"{Topic.APPOINTMENTS}.dlq"):
        with pytest.raises(OpsError, match="services consume"):
            request(group=None, to_topic=target)


def test_replay_checks_types_window_and_rate() -> None:
    with pytest.raises(OpsError, match=r"unknown event type.*AppointmentBookd"):
        request(group=None, to_topic="copy", types=["AppointmentBookd"])
    with pytest.raises(OpsError, match="is not after --from"):
        request(group=None, to_topic="copy", start="-1h", end="-2h")
    with pytest.raises(OpsError, match="messages per second"):
        request(group=None, to_topic="copy", rate="fast")
    assert request(group=None, to_topic="copy", rate="250/s").rate == 250.0
    assert request(group=None, to_topic="copy", rate="2.5").rate == 2.5


def test_replay_source_topics_follow_types_service_or_default_to_all() -> None:
    by_type = request(group=None, to_topic="copy", types=["AppointmentBooked", "TherapistMatched"])
    assert by_type.topics == (str(Topic.APPOINTMENTS), str(Topic.REFERRALS))
    assert request(service="booking").topics == (str(Topic.ASSESSMENTS), str(Topic.REFERRALS))
    assert request().topics == tuple(sorted(str(t) for t in Topic))
    assert request(topics=[str(Topic.CONSENTS)]).topics == (str(Topic.CONSENTS),)


def test_services_consume_what_their_handlers_register() -> None:
    assert set(load("referral").consumed_topics()) == {
        str(Topic.ASSESSMENTS),
        str(Topic.APPOINTMENTS),
    }
    assert str(Topic.CARE_PLANS) in load("notification").consumed_topics()
    with pytest.raises(OpsError, match="unknown service 'billing'"):
        load("billing")


# --- offsets CSV --------------------------------------------------------------------------


def test_offsets_csv_round_trips() -> None:
    rows = [OffsetRow("g", "t.b", 1, 7), OffsetRow("g", "t.a", 0, 0), OffsetRow("g", "t.a", 2, 9)]
    text = to_csv(rows)
    assert text.splitlines() == [
        "group,topic,partition,offset",
        "g,t.a,0,0",
        "g,t.a,2,9",
        "g,t.b,1,7",
    ]
    assert from_csv(text) == sorted(rows)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("topic,partition,offset\nt,0,1\n", "header line"),
        ("group,topic,partition,offset\ng,t,zero,1\n", "line 2: expected"),
        ("group,topic,partition,offset\ng,t,0,-1\n", "line 2: empty name or negative"),
        ("group,topic,partition,offset\ng,t,0,1\ng,t,0,2\n", "line 3: t:0 appears twice"),
        ("group,topic,partition,offset\ng,t,0,1\nh,t,1,2\n", "several groups"),
        ("group,topic,partition,offset\n", "no offsets"),
    ],
)
def test_a_bad_offsets_file_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(OpsError, match=problem):
        from_csv(text)


# --- tail lines ---------------------------------------------------------------------------


def record(value: bytes, *, key: bytes | None = b"p-1", headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord[bytes, bytes]:  # fmt: skip
    return ConsumerRecord(
        topic=str(Topic.ASSESSMENTS), partition=1, offset=42, timestamp=1_790_000_000_000,
        timestamp_type=0, key=key, value=value, checksum=None, serialized_key_size=3,
        serialized_value_size=len(value), headers=headers or [],
    )  # fmt: skip


def test_a_tail_line_is_the_envelope_and_where_it_is() -> None:
    envelope = wrap(sample_assessment("p-1"), "p-1")
    line = record_line(record(envelope.to_bytes()))
    assert (line["topic"], line["partition"], line["offset"], line["key"]) == (
        str(Topic.ASSESSMENTS), 1, 42, "p-1",
    )  # fmt: skip
    assert line["event_id"] == str(envelope.event_id) and line["type"] == "AssessmentCompleted"
    assert line["data"]["phq9_total"] == 12 and "error" not in line
    json.dumps(line)  # one JSON line


def test_a_record_that_does_not_parse_is_a_line_with_the_reason_and_no_content() -> None:
    garbage = record(b"Jane Doe called about her appointment")
    line = record_line(garbage)
    assert line["error"] == "not an event envelope" and line["reason"]
    assert "Jane" not in json.dumps(line)
    envelope = wrap(sample_assessment("p-1"), "p-1")
    broken = envelope.model_copy(update={"data": {**envelope.data, "phq9_total": 99}})
    line = record_line(record(broken.to_bytes()))
    assert line["error"] == "payload does not parse" and "data" not in line
    assert line["event_id"] == str(envelope.event_id)


def test_tail_filters_by_patient_and_type() -> None:
    envelope = wrap(sample_assessment("p-1"), "p-1")
    good = record(envelope.to_bytes(), headers=kafka_headers(envelope))
    garbage = record(b"{", key=b"p-1")
    line, bad = record_line(good), record_line(garbage)
    assert TailFilter().accepts(good, line) and TailFilter().accepts(garbage, bad)
    assert TailFilter(patient="p-1").accepts(good, line)
    assert not TailFilter(patient="p-2").accepts(good, line)
    assert TailFilter(frozenset({"AssessmentCompleted"})).accepts(good, line)
    assert not TailFilter(frozenset({"AppointmentBooked"})).accepts(good, line)
    assert not TailFilter(frozenset({"AssessmentCompleted"})).accepts(garbage, bad)


# --- the command line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["events", "tail", "--no-follow"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
        (["replay", "--group", "g", "--from", "-1h"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
        (["offsets", "export", "--group", "g"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
        (["projection", "rebuild", "booking"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
    ],
)
def test_missing_settings_say_how_to_set_them(args: list[str], missing: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": None, "DATABASE_URL": None, "COLUMNS": "250"}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == EXIT_ERROR
    assert missing in result.stderr and "--bootstrap" in result.stderr
    assert "Traceback" not in result.output


def test_rebuild_without_database_url_says_how_to_set_it() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": None, "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["projection", "rebuild", "booking"], env=env)
    assert result.exit_code == EXIT_ERROR
    assert "DATABASE_URL is not set" in result.stderr and "--database-url" in result.stderr


def test_option_errors_come_before_any_connection() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "COLUMNS": "250"}  # nothing listens there
    result = CliRunner().invoke(
        app, ["replay", "--group", "g", "--from", "-1h", "--type", "AppointmentBooked"], env=env
    )
    assert result.exit_code == EXIT_ERROR and "--type works only with --to-topic" in result.stderr
    result = CliRunner().invoke(app, ["events", "tail", "--from", "last tuesday"], env=env)
    assert result.exit_code == EXIT_ERROR and "ISO-8601" in result.stderr
