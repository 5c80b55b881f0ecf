"""Units of `make compose-test` that need no Docker engine (the engine-side runs in
containers/tests, by `make compose-test`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from carebridge_devstack._util import DevstackError
from carebridge_devstack.compose import published_ports
from carebridge_devstack.docker_engine import DockerEngine, PrivateDaemon
from carebridge_devstack.images import IMAGES
from carebridge_devstack.local_images import (
    debian_mirrors,
    fingerprint,
    project_images,
    prometheus_module_version,
)

ROOT = Path(__file__).resolve().parents[2]


def test_debian_mirrors_read_deb822_and_one_line_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAREBRIDGE_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert debian_mirrors(tmp_path) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian/ bookworm main\n"
    )
    assert debian_mirrors(tmp_path) == ("http://other.example/debian", None)
    monkeypatch.setenv("CAREBRIDGE_DEBIAN_MIRROR", "http://forced.example/debian/")
    assert debian_mirrors(tmp_path) == ("http://forced.example/debian", None)


def test_prometheus_image_tag_maps_to_its_go_module_version() -> None:
    assert prometheus_module_version("prom/prometheus:v3.5.0") == "v0.305.0"
    assert prometheus_module_version("prom/prometheus:v3.16.2") == "v0.316.2"
    assert prometheus_module_version(IMAGES["prometheus"].public).startswith("v0.3")
    with pytest.raises(DevstackError):
        prometheus_module_version("prom/prometheus:latest")


def test_recipe_fingerprint_follows_file_contents(tmp_path: Path) -> None:
    recipe = tmp_path / "kafka"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text("FROM base\n")
    first = fingerprint([recipe], "jar-a")
    assert fingerprint([recipe], "jar-a") == first
    assert fingerprint([recipe], "jar-b") != first
    (recipe / "Dockerfile").write_text("FROM base\nRUN true\n")
    assert fingerprint([recipe], "jar-a") != first


def test_published_ports_refuse_anything_but_loopback_with_a_variable(tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text('services:\n  kafka:\n    ports: ["127.0.0.1:${K:-29092}:29092"]\n')
    [kafka] = published_ports(compose).values()
    assert (kafka.variable, kafka.default, kafka.container_port) == ("K", 29092, 29092)
    compose.write_text('services:\n  kafka:\n    ports: ["29092:9092"]\n')
    with pytest.raises(DevstackError, match="publish as"):
        published_ports(compose)


def test_project_images_are_the_services_and_the_devstack_image() -> None:
    found = {image.tag: image.service_arg for image in project_images(ROOT / "docker-compose.yml")}
    assert found == {
        "carebridge/devstack:dev": "devstack",
        "carebridge/intake:dev": "intake",
        "carebridge/booking:dev": "booking",
        "carebridge/referral:dev": "referral",
        "carebridge/notification:dev": "notification",
    }


def test_private_daemon_keeps_to_its_own_paths(tmp_path: Path) -> None:
    """Its own socket, pidfile, exec-root and config; the host firewall left alone; never the
    machine-wide socket other engineers' tools would find."""
    daemon = PrivateDaemon(Console(file=None), run_dir=tmp_path / "run")
    command = daemon.command("/usr/sbin/dockerd")
    joined = " ".join(command)
    assert f"--host unix://{tmp_path}/run/docker.sock" in joined
    assert f"--pidfile {tmp_path}/run/docker.pid" in joined
    assert f"--exec-root {tmp_path}/run/exec" in joined
    assert f"--config-file {tmp_path}/run/daemon.json" in joined
    assert "--iptables=false" in command and "--ip-masq=false" in command
    assert "--cgroup-parent /carebridge-docker" in joined
    assert "/var/run/docker.sock" not in joined
    assert DockerEngine(daemon.host, "20.10", private=True).env == {"DOCKER_HOST": daemon.host}
    assert DockerEngine(None, "28.2", private=False).env == {}
