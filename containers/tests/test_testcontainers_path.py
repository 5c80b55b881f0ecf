"""The testcontainers path (`CAREBRIDGE_DEVSTACK=docker`) is the one this session runs on.

`make compose-test` runs this file in one pytest session with the shared runtime's
integration tests and a journey test, so they share the Kafka and PostgreSQL containers
checked here.
"""

from __future__ import annotations

import json
import os
import subprocess

from carebridge_devstack.endpoints import StackEndpoints
from carebridge_devstack.images import IMAGES


def test_stack_comes_from_containers_published_on_loopback(
    stack_endpoints: StackEndpoints,
) -> None:
    assert os.environ.get("CAREBRIDGE_DEVSTACK") == "docker"
    assert stack_endpoints.source == "docker"
    assert stack_endpoints.kafka_bootstrap.startswith("127.0.0.1:")
    assert "@127.0.0.1:" in stack_endpoints.database_url

    running = subprocess.run(
        ["docker", "ps", "--format", "{{json .}}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    rows = [json.loads(line) for line in running]
    for name in ("kafka", "postgres"):
        image = IMAGES[name].current()
        [row] = [r for r in rows if r["Image"] == image and "org.testcontainers" in r["Labels"]]
        ports = row["Ports"]
        assert ports and all(p.strip().startswith("127.0.0.1:") for p in ports.split(",")), ports
