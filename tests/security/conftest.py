"""The four services as processes against the real stack (own database, own consumer groups),
and the one place that says which headers authenticate a request."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.endpoints import StackEndpoints, create_database, drop_database
from carebridge_devstack.system import SERVICES, LocalSystem, SystemPorts

AuthHeaders = Callable[[httpx.Request], dict[str, str]]


@pytest.fixture(scope="module")
def auth_headers() -> AuthHeaders:
    """Headers that authenticate a request: a dev bearer token for the principal the request
    acts for (DevAuth's rules: the patient it is about, ops for ops routes, ...), so fuzzed
    requests get past authentication and reach the handlers. Change authentication here."""
    auth = DevAuth()

    def headers(request: httpx.Request) -> dict[str, str]:
        return auth.headers_for(*auth.actor_for(request))

    return headers


@pytest.fixture(scope="module")
def system_database(stack_endpoints: StackEndpoints) -> Iterator[str]:
    """A new database for the module's system (an admin URL: tests may read every schema)."""
    database_url = create_database(stack_endpoints.database_url, prefix="security_")
    try:
        yield database_url
    finally:
        drop_database(database_url)


@pytest.fixture(scope="module")
def system(
    stack_endpoints: StackEndpoints,
    system_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalSystem]:
    endpoints = StackEndpoints(
        stack_endpoints.kafka_bootstrap, system_database, stack_endpoints.source
    )
    work: Path = tmp_path_factory.mktemp("system")
    run = uuid.uuid4().hex[:8]
    # Own consumer groups from the end of each topic: only this module's events reach them.
    extra_env = {
        name: {
            "CAREBRIDGE_CONSUMER_GROUP": f"{name}-security-{run}",
            "CAREBRIDGE_CONSUMER_OFFSET_RESET": "latest",
        }
        for name in SERVICES
    }
    extra_env["booking"]["CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START"] = "true"  # complete a visit now
    local = LocalSystem(endpoints, work, ports=SystemPorts.free(), extra_env=extra_env)
    local.start(timeout=180)
    try:
        yield local
    finally:
        codes = local.stop()
        leftovers = [p.pid for p in local.group.processes.values() if p.alive()]
        assert not leftovers, f"processes left behind: {leftovers} (exit codes {codes})"
