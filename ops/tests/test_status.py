"""`carebridge status` against running services (intake and booking as processes on the real
stack), with two services not running: those are shown as unreachable, not as a crash."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from carebridge_devstack._util import free_port
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.processes import ProcessGroup, service_spec
from carebridge_ops.cli import app
from carebridge_ops.status import render, summarize


@pytest.fixture
def running(
    service_database_url: Callable[[str], str], stack_endpoints: StackEndpoints, tmp_path: Path
) -> Iterator[dict[str, str]]:
    ports = {"intake": free_port(), "booking": free_port()}
    run = uuid.uuid4().hex[:8]
    specs = [
        service_spec(
            name,
            port,
            {
                "DATABASE_URL": service_database_url(name),  # its deploy step, its own role
                "KAFKA_BOOTSTRAP_SERVERS": stack_endpoints.kafka_bootstrap,  # this test's stack
                "CAREBRIDGE_CONSUMER_GROUP": f"{name}-status-{run}",
                "CAREBRIDGE_CONSUMER_OFFSET_RESET": "latest",
                "CAREBRIDGE_LAG_SAMPLE_INTERVAL_SECONDS": "0.5",
            },
        )
        for name, port in ports.items()
    ]
    group = ProcessGroup(specs, tmp_path / "logs")
    group.start()
    try:
        group.wait_ready(timeout=120)
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        group.stop()


@pytest.mark.integration
def test_status_shows_running_services_and_unreachable_ones(running: dict[str, str]) -> None:
    closed = {name: f"http://127.0.0.1:{free_port()}" for name in ("referral", "notification")}
    options = [f"--{name}-url={url}" for name, url in {**running, **closed}.items()]
    runner = CliRunner()

    as_json = runner.invoke(app, ["status", "--json", "--timeout", "5", *options])
    assert as_json.exit_code == 1, as_json.output  # two services do not answer
    rows = {row["service"]: row for row in map(json.loads, as_json.stdout.splitlines())}
    assert rows["intake"]["reachable"] and rows["intake"]["ready"], rows["intake"]
    assert rows["intake"]["failing"] == [] and rows["intake"]["outbox_rows"] == 0
    assert rows["booking"]["ready"] and rows["booking"]["dead_letters"] == 0, rows["booking"]
    assert isinstance(rows["booking"]["consumer_lag"], int), rows["booking"]
    for name in closed:
        assert rows[name]["reachable"] is False and rows[name]["problem"] == "ConnectError"

    table = runner.invoke(app, ["status", "--timeout", "5", *options])
    assert table.exit_code == 1
    assert "unreachable" in table.stdout and "ready" in table.stdout
    assert "not answering: referral, notification" in table.stderr


def test_a_not_ready_service_shows_its_failing_checks_and_last_error() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    readyz = {
        "status": "not_ready",
        "failing": ["kafka", "outbox_backlog"],
        "outbox": {"backlog_rows": 2, "oldest_age_seconds": 75.0, "max_age_seconds": 60.0},
        "consumer": {"group": "intake", "lag": 0},
        "last_error": {
            "component": "outbox_relay",
            "error": "KafkaConnectionError",
            "at": (now - timedelta(seconds=30)).isoformat(),
        },
    }
    metrics = (
        'carebridge_outbox_backlog_rows{producer="intake"} 3.0\n'
        'carebridge_outbox_oldest_age_seconds{producer="intake"} 80.5\n'
        'carebridge_consumer_lag{consumer="intake",topic="t",partition="0"} 4.0\n'
        'carebridge_consumer_lag{consumer="intake",topic="t",partition="1"} 3.0\n'
        'carebridge_events_dead_lettered_total{consumer="intake"} 2.0\n'
    )
    status = summarize("intake", "http://x", readyz, metrics, now)
    assert (status.ready, status.failing) == (False, ("kafka", "outbox_backlog"))
    assert (status.outbox_rows, status.outbox_oldest_s) == (3, 80.5), "metrics win over /readyz"
    assert (status.consumer_lag, status.dead_letters) == (7, 2)
    assert status.last_error == "outbox_relay: KafkaConnectionError (30s ago)"

    console = Console(width=200, record=True)
    console.print(render([status]))
    text = console.export_text()
    assert "NOT READY" in text and "kafka, outbox_backlog" in text and "80.5s" in text
