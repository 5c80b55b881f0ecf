"""The four services as separate processes against the real stack, one database for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from carebridge_contracts.services import SERVICES
from carebridge_devstack.demo import CareClient
from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.system import LocalSystem, isolated_system


@pytest.fixture(scope="module")
def system(
    stack_endpoints: StackEndpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalSystem]:
    work: Path = tmp_path_factory.mktemp("system")
    booking_env = {"booking": {"CAREBRIDGE_ALLOW_OUTCOME_BEFORE_START": "true"}}
    with isolated_system(stack_endpoints, work, label="journey", extra_env=booking_env) as (
        local,
        _,
    ):
        yield local
    leftovers = [p.pid for p in local.group.processes.values() if p.alive()]
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def client(system: LocalSystem) -> CareClient:
    return CareClient({name: system.url(name) for name in SERVICES})
