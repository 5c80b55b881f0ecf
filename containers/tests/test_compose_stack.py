"""docker-compose.yml, run for real (`make compose-test`; needs a Docker engine).

One compose project on free published ports: every container healthy, the README's journey
through the published ports, a SIGKILLed service brought back by its restart policy with
nothing lost, the observability profile's Prometheus scraping the four services, and
`down -v` leaving nothing behind. The tests run in file order on one stack.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError
from rich.console import Console

from carebridge_contracts.registry import topics_owned_by
from carebridge_contracts.services import SERVICES
from carebridge_devstack._util import free_port
from carebridge_devstack.compose import (
    ComposeMailbox,
    ComposeProject,
    compose_file,
    kafka_login,
    published_ports,
)
from carebridge_devstack.demo import CareClient, timeline, wait_until, walk_demo_patient
from carebridge_devstack.local_images import project_images
from carebridge_devstack.signer import dev_signer
from carebridge_devstack.testing import read_topic, topic_for_type
from carebridge_shared.kafka import KafkaSecurity

REPORT_DIR = Path(os.environ.get("CAREBRIDGE_COMPOSE_REPORT_DIR", ".compose-test"))
COMPOSE: dict[str, Any] = yaml.safe_load(compose_file().read_text())
ALWAYS_ON = sorted(n for n, s in COMPOSE["services"].items() if "profiles" not in s)
# the deploy steps: each service's migrations, Kafka's users, ACLs and topics
ONE_SHOT = {name for name in ALWAYS_ON if name.endswith("-migrate")} | {"kafka-provision"}
# generous: on a 2-core machine shared with other stacks, Kafka alone once took 5 minutes
UP_TIMEOUT_S = 1200


@dataclass
class Stack:
    compose: ComposeProject
    observability: ComposeProject
    ports: dict[str, int]
    volumes_before: set[str]
    networks_before: set[str]
    up_seconds: float

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def ids(*args: str) -> set[str]:
    return set(docker(*args, "-q").split())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    published = published_ports()
    ports = {name: free_port() for name in published}
    env = {published[name].variable: str(port) for name, port in ports.items()}
    env["CAREBRIDGE_AUTH_PUBLIC_KEYS"] = dev_signer().public_pem
    project = f"cbtest{uuid.uuid4().hex[:6]}"
    compose = ComposeProject(project, env)
    observability = ComposeProject(project, env, profiles=("observability",))
    volumes, networks = ids("volume", "ls"), ids("network", "ls")
    # the test's own Kafka clients (demo timeline, read_topic) log in as ops, as a person would
    saved = dict(os.environ)
    os.environ.update(kafka_login("ops"))
    started = time.monotonic()
    try:
        compose.run("up", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT_S),
                    timeout=UP_TIMEOUT_S + 60)  # fmt: skip
        yield Stack(compose, observability, ports, volumes, networks, time.monotonic() - started)
    finally:
        if observability.run("ps", "--all", "--quiet", check=False).stdout.strip():
            save_logs(observability)  # a test failed before test_down took them
        observability.run("down", "--volumes", "--remove-orphans", check=False)
        os.environ.clear()
        os.environ.update(saved)


def save_logs(compose: ComposeProject) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    logs = compose.run("logs", "--no-color", "--timestamps", check=False)
    (REPORT_DIR / "compose-logs.txt").write_text(logs.stdout + logs.stderr)


def test_every_container_is_healthy(stack: Stack) -> None:
    rows = {row["Service"]: row for row in stack.compose.containers()}
    assert sorted(rows) == ALWAYS_ON
    for name, row in rows.items():
        if name in ONE_SHOT:
            assert (row["State"], row["ExitCode"]) == ("exited", 0), row
        else:
            assert (row["State"], row["Health"]) == ("running", "healthy"), row
    for row in rows.values():  # published on loopback only
        for publisher in row.get("Publishers") or []:
            if publisher.get("PublishedPort"):
                assert publisher["URL"] in ("127.0.0.1", ""), publisher
    (REPORT_DIR / "up.json").write_text(json.dumps({"up_wait_seconds": stack.up_seconds}))


def test_shipped_images_hold_no_build_ca_or_build_tools(stack: Stack) -> None:
    """The build stage read the CA bundle and ran pip/uv; the images that run have neither."""
    for image in project_images(compose_file()):
        found = docker(
            "run", "--rm", "--entrypoint", "python", image.tag, "-c",
            "import os, shutil; print([p for p in ('/tmp/build-ca', '/opt/uv') if os.path.exists(p)],"
            " shutil.which('uv'))",
        ).strip()  # fmt: skip
        assert found == "[] None", f"{image.tag}: {found}"


def test_kafka_authorizes_each_service_login(stack: Stack) -> None:
    """Booking's login may not write intake's topic (the brokers' ACLs) and a wrong password
    is refused; the ops login reads every topic in the journey test below."""
    intake_topic = str(topics_owned_by("intake")[0])

    async def attempts() -> tuple[str, str]:
        outcomes = []
        for login in (kafka_login("booking"),
                      {**kafka_login("booking"), "CAREBRIDGE_KAFKA_SASL_PASSWORD": "wrong"}):  # fmt: skip
            producer = AIOKafkaProducer(
                bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=15_000,
                **security_from(login).client_options(),
            )  # fmt: skip
            try:
                await producer.start()
                await producer.send_and_wait(intake_topic, b"forged", key=b"p")
                outcomes.append("written")
            except Exception as exc:
                outcomes.append(type(exc).__name__)
            finally:
                await producer.stop()
        return outcomes[0], outcomes[1]

    forged, wrong_password = asyncio.run(attempts())
    assert forged == TopicAuthorizationFailedError.__name__
    assert wrong_password != "written"


def security_from(login: dict[str, str]) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        username=login["CAREBRIDGE_KAFKA_SASL_USERNAME"],
        password=login["CAREBRIDGE_KAFKA_SASL_PASSWORD"],
    )  # fmt: skip


def test_readme_journey_through_the_published_ports(stack: Stack, tmp_path: Path) -> None:
    client = CareClient({name: stack.url(name) for name in SERVICES})
    mailbox = ComposeMailbox(stack.compose, tmp_path / "mail")
    out = io.StringIO()
    cast = walk_demo_patient(client, mailbox, stack.kafka_bootstrap, Console(file=out, width=150))
    (REPORT_DIR / "journey.txt").write_text(out.getvalue())

    entries = asyncio.run(timeline(stack.kafka_bootstrap, cast.patient_id))
    types = [entry.type for entry in entries]
    assert types[0] == "AssessmentCompleted", types
    for expected in ("AppointmentBooked", "AppointmentCompleted", "TherapistMatched",
                     "CareTeamFormed", "CarePlanUpdated", "NotificationSent"):  # fmt: skip
        assert expected in types, (expected, types)
    confirmations = mailbox.to(f"{cast.patient_id}@patients.example")
    assert confirmations and all(mail.path is not None for mail in confirmations)


def restart_count(container: str) -> int:
    return int(docker("inspect", "--format", "{{.RestartCount}}", container).strip())


def health(container: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", container).strip()


def test_sigkilled_service_comes_back_and_nothing_is_lost(stack: Stack) -> None:
    """Assessments are stored, then intake's process is SIGKILLed (as the kernel's OOM killer
    would) before its outbox is known to be relayed: compose's restart policy brings it back,
    and booking learns of every assessment, each on Kafka."""
    client = CareClient({name: stack.url(name) for name in SERVICES})
    container = stack.compose.container_id("intake")
    restarts = restart_count(container)
    patients = [f"kill-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]
    for patient in patients:
        client.assess(patient)
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", container).strip())
    assert Path(f"/proc/{pid}").exists(), "the engine must run on this host to SIGKILL its process"
    os.kill(pid, signal.SIGKILL)

    wait_until(
        "intake to be restarted and healthy",
        lambda: restart_count(container) > restarts and health(container) == "healthy",
        timeout=180,
    )
    for patient in patients:
        client.wait_eligible(patient, timeout=120)
    wanted = {patient.encode() for patient in patients}
    records = asyncio.run(
        read_topic(
            stack.kafka_bootstrap, topic_for_type("AssessmentCompleted", 1),
            where=lambda r: r.key in wanted, expect=len(wanted), timeout=60,
        )
    )  # fmt: skip
    assert {record.key for record in records} == wanted
    after = f"kill-after-{uuid.uuid4().hex[:6]}"
    client.assess(after)
    client.wait_eligible(after, timeout=120)


def test_observability_profile_scrapes_the_four_services(stack: Stack) -> None:
    stack.observability.run("up", "--detach", "--wait", "prometheus", timeout=300)
    url = f"http://127.0.0.1:{stack.ports['prometheus']}/api/v1/targets"

    def targets_up() -> dict[str, str] | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except OSError:
            return None
        found = {t["labels"]["service"]: t["health"] for t in body["data"]["activeTargets"]}
        return found if found and all(h == "up" for h in found.values()) else None

    up = wait_until("Prometheus to scrape every service", targets_up, timeout=120)
    assert sorted(up) == sorted(SERVICES)
    (REPORT_DIR / "prometheus-targets.json").write_text(json.dumps(up, indent=1))


def test_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    save_logs(stack.observability)
    stack.observability.run("down", "--volumes", "--remove-orphans")
    label = f"label=com.docker.compose.project={stack.compose.project}"
    assert ids("ps", "-a", "--filter", label) == set()
    assert ids("network", "ls") == stack.networks_before
    assert ids("volume", "ls") == stack.volumes_before
