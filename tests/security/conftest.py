"""The four services as processes against the real stack (own database, own consumer groups),
and the one place that says which headers authenticate a request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from carebridge_devstack.dev_auth import DevAuth
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.system import LocalSystem, isolated_system

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
def isolated(
    stack_endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalSystem, str]]:
    """The system on its own database and consumer groups: only this module's events."""
    work: Path = tmp_path_factory.mktemp("system")
    booking_env = {"booking": {"CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START": "true"}}  # visit now
    with isolated_system(stack_endpoints, work, label="security", extra_env=booking_env) as pair:
        yield pair
    leftovers = [p.pid for p in pair[0].group.processes.values() if p.alive()]
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def system(isolated: tuple[LocalSystem, str]) -> LocalSystem:
    return isolated[0]


@pytest.fixture(scope="module")
def system_database(isolated: tuple[LocalSystem, str]) -> str:
    """The system's database (an admin URL: tests may read every schema)."""
    return isolated[1]
