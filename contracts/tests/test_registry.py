from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import pytest

import carebridge_contracts
from carebridge_contracts import (
    AppointmentBooked,
    AssessmentCompleted,
    BaseEvent,
    ContractError,
    Envelope,
    InvalidEnvelope,
    InvalidPayload,
    ProducerNotTopicOwner,
    Topic,
    UnknownEventType,
    all_topics,
    all_topics_with_dlq,
    check_producer,
    dlq_topic,
    entries,
    model_for,
    parse,
    topic_for,
    topic_owner,
)
from carebridge_contracts.events import booking, care, intake, notification, outcomes, referral

EXPECTED_TOPICS = {
    "AssessmentCompleted": Topic.ASSESSMENTS,
    "SafetyRiskFlagged": Topic.ASSESSMENTS,
    "OutcomeMeasured": Topic.ASSESSMENTS,
    "SymptomsWorsened": Topic.ASSESSMENTS,
    "AppointmentBooked": Topic.APPOINTMENTS,
    "AppointmentRescheduled": Topic.APPOINTMENTS,
    "AppointmentCancelled": Topic.APPOINTMENTS,
    "AppointmentCompleted": Topic.APPOINTMENTS,
    "AppointmentNoShow": Topic.APPOINTMENTS,
    "EarlierFollowUpOffered": Topic.APPOINTMENTS,
    "TherapistRequested": Topic.REFERRALS,
    "TherapistMatched": Topic.REFERRALS,
    "ReferralWaitlisted": Topic.REFERRALS,
    "CareTeamFormed": Topic.REFERRALS,
    "CareTeamEnded": Topic.REFERRALS,
    "CareTeamMemberJoined": Topic.REFERRALS,
    "CareTeamMemberLeft": Topic.REFERRALS,
    "CarePlanUpdated": Topic.CARE_PLANS,
    "ConsentGranted": Topic.CONSENTS,
    "ConsentRevoked": Topic.CONSENTS,
    "NotificationSent": Topic.DELIVERIES,
    "NotificationFailed": Topic.DELIVERIES,
}


def test_topic_names() -> None:
    assert {t.name: t.value for t in Topic} == {
        "ASSESSMENTS": "carebridge.intake.assessments",
        "APPOINTMENTS": "carebridge.booking.appointments",
        "REFERRALS": "carebridge.referral.referrals",
        "CARE_PLANS": "carebridge.care.plans",
        "CONSENTS": "carebridge.referral.consents",
        "DELIVERIES": "carebridge.notification.deliveries",
    }
    assert all_topics() == list(Topic)
    assert dlq_topic(Topic.ASSESSMENTS) == "carebridge.intake.assessments.dlq"
    with_dlq = all_topics_with_dlq()
    assert len(with_dlq) == 2 * len(Topic)
    assert set(with_dlq) == {t.value for t in Topic} | {f"{t.value}.dlq" for t in Topic}


def test_every_event_is_registered_on_its_topic() -> None:
    assert {e.event_type: e.topic for e in entries()} == EXPECTED_TOPICS
    for entry in entries():
        assert model_for(entry.event_type, entry.version) is entry.model
        assert topic_for(entry.model) is entry.topic


def test_every_event_class_in_the_events_package_is_registered() -> None:
    registered = {e.model for e in entries()}
    for module in (intake, booking, referral, care, notification, outcomes):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseEvent) and value is not BaseEvent:
                assert value in registered, value
                assert getattr(carebridge_contracts, value.__name__) is value


def test_topic_for_instance(booked: AppointmentBooked) -> None:
    assert topic_for(booked) is Topic.APPOINTMENTS


def test_unregistered_model_has_no_topic() -> None:
    class Stray(BaseEvent):
        event_type = "Stray"
        event_version = 1

    with pytest.raises(UnknownEventType, match="Stray"):
        topic_for(Stray)


def test_model_for_unknown_type_and_version() -> None:
    with pytest.raises(UnknownEventType) as info:
        model_for("NoSuchEvent", 1)
    assert (info.value.type, info.value.version, info.value.known_versions) == (
        "NoSuchEvent",
        1,
        (),
    )
    assert isinstance(info.value, ContractError)
    with pytest.raises(UnknownEventType, match=r"unknown version 9 .*known versions: 1") as info:
        model_for("AssessmentCompleted", 9)
    assert info.value.known_versions == (1,)


def test_parse_bytes_and_envelope(booked: AppointmentBooked) -> None:
    envelope = Envelope.wrap(booked, producer="booking", sequence=1, correlation_id=uuid4())
    for message in (envelope, envelope.to_bytes(), envelope.to_bytes().decode()):
        parsed_envelope, event = parse(message)
        assert parsed_envelope == envelope
        assert event == booked
        assert isinstance(event, AppointmentBooked)


def _raw(booked: AppointmentBooked, **overrides: object) -> bytes:
    envelope = Envelope.wrap(booked, producer="booking", sequence=1, correlation_id=uuid4())
    doc = json.loads(envelope.to_bytes())
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_parse_unknown_type(booked: AppointmentBooked) -> None:
    with pytest.raises(UnknownEventType, match="AppointmentTeleported"):
        parse(_raw(booked, type="AppointmentTeleported"))


def test_parse_unknown_version(booked: AppointmentBooked) -> None:
    with pytest.raises(UnknownEventType) as info:
        parse(_raw(booked, version=2))
    assert (info.value.type, info.value.version) == ("AppointmentBooked", 2)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"clinician_role": "surgeon"}, "clinician_role"),
        ({"starts_at": "2026-03-04T15:00:00"}, "starts_at"),
        ({"notes": "feels better"}, "notes"),
        ({"state": "ZZ"}, "state"),
    ],
)
def test_parse_invalid_payload(
    booked: AppointmentBooked, change: dict[str, str], reason: str
) -> None:
    data = {**booked.model_dump(mode="json"), **change}
    with pytest.raises(InvalidPayload) as info:
        parse(_raw(booked, data=data))
    assert reason in info.value.reason
    assert (info.value.type, info.value.version) == ("AppointmentBooked", 1)
    assert "feels better" not in str(info.value)


def test_parse_missing_payload_field(booked: AppointmentBooked) -> None:
    data = booked.model_dump(mode="json")
    del data["clinician_id"]
    with pytest.raises(InvalidPayload, match="clinician_id"):
        parse(_raw(booked, data=data))


def test_parse_subject_must_be_patient(booked: AppointmentBooked) -> None:
    with pytest.raises(InvalidPayload, match="subject"):
        parse(_raw(booked, subject="pat-other"))


def test_parse_bad_envelope_is_invalid_payload() -> None:
    with pytest.raises(InvalidEnvelope) as info:
        parse(b'{"type": "AssessmentCompleted"}')
    assert isinstance(info.value, InvalidPayload)


def test_assessment_topic_is_keyed_per_patient(events: list[BaseEvent]) -> None:
    assessment = next(e for e in events if isinstance(e, AssessmentCompleted))
    assert topic_for(assessment) == "carebridge.intake.assessments"


def test_readme_lists_every_topic_and_event() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for topic in Topic:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{topic.value}`"))
        for entry in entries():
            assert (f"{entry.event_type} v{entry.version}" in row) == (entry.topic is topic)


def test_a_topic_believes_only_its_owner(booked: AppointmentBooked) -> None:
    genuine = Envelope.wrap(booked, producer="booking", sequence=1, correlation_id=uuid4())
    check_producer(genuine, str(Topic.APPOINTMENTS))
    forged = genuine.model_copy(update={"producer": "referral"})
    with pytest.raises(ProducerNotTopicOwner) as refused:
        check_producer(forged, str(Topic.APPOINTMENTS))
    assert isinstance(refused.value, ContractError)  # consumers treat it as poison
    assert str(refused.value) == (
        f"producer 'referral' is not 'booking', the owner of {Topic.APPOINTMENTS}"
    )
    with pytest.raises(ProducerNotTopicOwner, match="has no owner"):
        check_producer(genuine, "some.other.topic")
    assert topic_owner(str(Topic.CARE_PLANS)) == "referral"
    assert topic_owner("some.other.topic") is None
