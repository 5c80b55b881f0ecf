"""The four services as separate processes against the real stack, one database for them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carebridge_devstack.demo import CareClient
from carebridge_devstack.endpoints import StackEndpoints, create_database, drop_database
from carebridge_devstack.system import SERVICES, LocalSystem, SystemPorts


@pytest.fixture(scope="module")
def system(
    stack_endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSystem]:
    database_url = create_database(stack_endpoints.database_url, prefix="journey_")
    endpoints = StackEndpoints(
        stack_endpoints.kafka_bootstrap, database_url, stack_endpoints.source
    )
    work: Path = tmp_path_factory.mktemp("system")
    # Own consumer groups, starting at the end of each topic: the journey sees only its own
    # events, not the history other tests left on the shared topics.
    run = uuid.uuid4().hex[:8]
    extra_env = {
        name: {
            "CAREBRIDGE_CONSUMER_GROUP": f"{name}-journey-{run}",
            "CAREBRIDGE_CONSUMER_OFFSET_RESET": "latest",
        }
        for name in SERVICES
    }
    extra_env["booking"]["CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START"] = "true"
    local = LocalSystem(endpoints, work, ports=SystemPorts.free(), extra_env=extra_env)
    local.start(timeout=180)
    try:
        yield local
    finally:
        codes = local.stop()
        drop_database(database_url)
        leftovers = [p.pid for p in local.group.processes.values() if p.alive()]
        assert not leftovers, f"processes left behind: {leftovers} (exit codes {codes})"


@pytest.fixture(scope="module")
def client(system: LocalSystem) -> CareClient:
    return CareClient({name: system.url(name) for name in SERVICES})
