"""Pieces of the chaos suite that need no stack: poison, order check, replica naming."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from carebridge_contracts import (
    BaseEvent,
    CarePlanUpdated,
    ConsentGranted,
    ContractError,
    Envelope,
    TherapistRequested,
    parse,
)
from carebridge_contracts.registry import Topic
from carebridge_devstack.chaos_backlog import consumer_groups, wait_until_quiet
from carebridge_devstack.chaos_load import Journey
from carebridge_devstack.chaos_oracle import TopicView, Verdict, _view, check_order, check_referral
from carebridge_devstack.chaos_poison import KINDS, poison_set, poison_value
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.system import LocalSystem, SystemPorts, instance_names
from carebridge_devstack.testing import Record, sample_assessment, wrap


@pytest.mark.parametrize("topic", [str(t) for t in Topic])
def test_each_poison_fails_with_the_error_the_oracle_expects(topic: str) -> None:
    poisons = poison_set("r1", [topic])
    assert sorted(p.kind for p in poisons) == sorted(KINDS)
    assert len({p.tag for p in poisons}) == len(poisons)
    for poison in poisons:
        with pytest.raises(ContractError) as caught:
            parse(poison_value(poison))
        assert type(caught.value).__name__ == poison.expected_error, poison.kind


def _record(envelope: Envelope, offset: int, partition: int = 0) -> Record:
    key = envelope.subject.encode()
    return Record(str(Topic.ASSESSMENTS), partition, offset, key, envelope.to_bytes(), {})


def test_order_check_accepts_republished_copies_and_flags_reordering() -> None:
    first, second, third = (wrap(sample_assessment("p-1"), "p-1", sequence=n) for n in (1, 2, 3))
    republished = [first, second, first, second, third]  # relay crashed after sending 1, 2
    verdict = Verdict()
    records = [_record(e, i) for i, e in enumerate(republished)]
    assert check_order("t", _view(records), verdict) == 0 and verdict.ok

    swapped = [_record(e, i) for i, e in enumerate([first, third, second])]
    assert check_order("t", _view(swapped), verdict) == 2
    assert not verdict.ok

    split = [_record(first, 0, partition=0), _record(second, 0, partition=1)]
    assert check_order("t", _view(split), Verdict()) == 1


def test_replicas_get_their_own_names_ports_and_instance_ids(tmp_path: Path) -> None:
    assert instance_names("booking", 1) == ["booking"]
    assert instance_names("booking", 2) == ["booking-1", "booking-2"]
    system = LocalSystem(
        StackEndpoints("127.0.0.1:1", "postgresql://x@127.0.0.1:1/x"), tmp_path,
        ports=SystemPorts.free(), replicas={"booking": 2},
    )  # fmt: skip
    names = set(system.group.processes)
    assert {"intake", "booking-1", "booking-2", "referral", "notification", "smtp"} == names
    urls = system.urls("booking")
    assert len(set(urls)) == 2 and system.url("booking") == urls[0]
    spec = system.group["booking-2"].spec
    assert spec.env["CAREBRIDGE_INSTANCE_ID"] == "booking-2"
    assert spec.argv[-1] == "carebridge_booking"
    assert system.service_of("booking-2") == "booking"


def test_consumer_groups_are_read_from_the_start_up_log_lines(tmp_path: Path) -> None:
    (tmp_path / "booking-1.log").write_text(
        '{"msg": "consumer_started", "group": "booking", "topics": ["a", "b"]}\nnot json\n'
    )
    (tmp_path / "booking-2.log").write_text(
        '{"msg": "consumer_started", "group": "booking", "topics": ["a", "b"]}\n'
    )
    assert consumer_groups(tmp_path) == {"booking": ["a", "b"]}


async def test_quiet_means_two_all_zero_readings_in_a_row() -> None:
    """Issue 16: the run drained the outbox, then waited for the last confirmations to be
    sent, and read nothing again: the NotificationSent rows those sends wrote were still
    being published while the oracle read. A zero reading followed by work is not quiet."""
    readings = iter([
        {"deliveries_owed": 3, "notification.unpublished": 0},
        {"deliveries_owed": 0, "notification.unpublished": 0},  # the sends just committed
        {"deliveries_owed": 0, "notification.unpublished": 3},  # ... and wrote outbox rows
        {"deliveries_owed": 0, "notification.unpublished": 0},
        {"deliveries_owed": 0, "notification.unpublished": 0},
        {"deliveries_owed": 9, "notification.unpublished": 9},  # must never be read
    ])  # fmt: skip
    calls = 0

    async def read() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return next(readings)

    last = await wait_until_quiet(read, within_s=30.0, interval_s=0.0)
    assert calls == 5 and not any(last.values())


async def test_an_unreadable_backlog_is_not_quiet_and_time_runs_out() -> None:
    async def broker_down() -> dict[str, int]:
        raise ConnectionError("broker restarting")

    last = await wait_until_quiet(broker_down, within_s=0.05, interval_s=0.01)
    assert last == {"unreadable: ConnectionError": 1}


def _referral_views(*events: tuple[Topic, BaseEvent]) -> dict[str, TopicView]:
    records: dict[str, list[Record]] = {str(t): [] for t in Topic}
    for offset, (topic, event) in enumerate(events):
        envelope = wrap(event, event.patient_id, offset + 1)
        records[str(topic)].append(
            Record(str(topic), 0, offset, event.patient_id.encode(), envelope.to_bytes(), {})
        )
    return {name: _view(found) for name, found in records.items()}


def test_the_oracle_counts_referrals_consents_and_care_plan_versions() -> None:
    patient = "cz1-p00001"
    journey = Journey(patient, "cz1-psy-1", assessment_id="a1", appointment_id="b1",
                      booked_clinician="cz1-psy-1", consent_granted=True, plan_versions=[1, 2])  # fmt: skip
    requested = TherapistRequested(patient_id=patient, referral_id=uuid.uuid4(), state="WY",
                                   modality="CBT", urgency="routine", requested_by="intake")  # fmt: skip
    granted = ConsentGranted(patient_id=patient, consent_id=uuid.uuid4(), scope="care_plan_sharing")

    def plan(version: int) -> CarePlanUpdated:
        return CarePlanUpdated(patient_id=patient, plan_version=version,
                               changed_sections=["therapy_frequency"], author_id="cz1-psy-1",
                               author_role="psychiatrist")  # fmt: skip

    whole = _referral_views((Topic.REFERRALS, requested), (Topic.CONSENTS, granted),
                            (Topic.CARE_PLANS, plan(1)), (Topic.CARE_PLANS, plan(2)))  # fmt: skip
    verdict = Verdict()
    assert check_referral(whole, [journey], "cz1-", verdict) == 0
    assert verdict.ok and verdict.figures["plan_versions_accepted"] == 2

    # version 2 applied twice (two events), the consent event lost, no referral opened
    broken = _referral_views((Topic.CARE_PLANS, plan(1)), (Topic.CARE_PLANS, plan(2)),
                             (Topic.CARE_PLANS, plan(2)))  # fmt: skip
    verdict = Verdict()
    assert check_referral(broken, [journey], "cz1-", verdict) == 1
    assert len(verdict.violations) == 3
