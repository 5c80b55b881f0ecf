"""Pieces of the chaos suite that need no stack: poison, order check, replica naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from carebridge_contracts import ContractError, Envelope, parse
from carebridge_contracts.registry import Topic
from carebridge_devstack.chaos_backlog import consumer_groups, wait_until_quiet
from carebridge_devstack.chaos_oracle import Verdict, _view, check_order
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
