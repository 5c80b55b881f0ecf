"""The short chaos run inside `make test`: a private stack (own directory, free ports), two
replicas of every consuming service, a SIGKILL of each service, a Kafka crash, a PostgreSQL
restart and the poison set, under ~100 patient journeys; then the oracle must find nothing wrong.

The private stack matters: crashing Kafka or PostgreSQL here must never hit the stack the rest
of the test session shares.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from carebridge_contracts.services import SERVICES
from carebridge_devstack._util import free_port
from carebridge_devstack.chaos import ChaosConfig, run_chaos
from carebridge_devstack.chaos_poison import KINDS, consumed_topics

pytestmark = [pytest.mark.integration, pytest.mark.journey]


def _free_pair() -> int:
    """A port whose successor (the KRaft controller's) looks free too."""
    for _ in range(20):
        port = free_port()
        if port < 65000:
            try:
                import socket

                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free pair of ports")


@pytest.mark.timeout(600)  # journeys also drive referral (issue 16): more requests each
def test_short_chaos_run_loses_nothing_and_does_nothing_twice(tmp_path: Path) -> None:
    config = ChaosConfig(
        journeys=100,
        replicas=2,
        kills_per_service=1,
        postgres_faults=("postgres-restart",),
        window_s=60.0,
        concurrency=10,
        clinicians=4,
        seed=None,
        stack_dir=tmp_path / "stack",
        kafka_port=_free_pair(),
        pg_port=free_port(),
        results=tmp_path / "chaos-results.json",
        time_limit_s=240.0,
    )
    result = run_chaos(config, Console(width=120, force_terminal=False))
    summary = result.summary
    figures = result.verdict.figures
    details = json.dumps({"summary": summary, "violations": result.verdict.violations[:20]},
                         indent=1, default=str)  # fmt: skip

    kills = {r.target.rsplit("-", 1)[0] for r in result.faults if r.kind == "kill"}
    assert kills == set(SERVICES), details
    assert summary["kafka_faults"] == 1 and summary["postgres_faults"] == 1, details
    assert summary["journeys_completed"] == config.journeys, details
    assert figures["lost"] == 0, details
    assert figures["duplicated_effects"] == 0, details
    assert figures["double_bookings"] == 0, details
    assert figures["order_violations"] == 0, details
    # every kind of poison on every topic some consuming group reads
    consumed = consumed_topics(summary["groups"])
    assert len(consumed) >= 4, details
    assert figures["poison_injected"] == len(KINDS) * len(consumed), details
    assert figures["dlq_distinct"] == figures["dlq_expected"] > 0, details
    assert not result.verdict.violations, details
    assert not summary["problems"], details
