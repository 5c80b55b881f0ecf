"""Images for docker compose and testcontainers: pulled where a registry answers, else built here.

Where no registry answers (ADR 0016), equivalents are built on the engine itself, each from a
recipe in ``containers/`` of the repository (not ``docker/``: a top-level ``docker``
directory would shadow the Docker SDK testcontainers imports, under pytest's importlib mode):

- ``carebridge-local/debian:bookworm``: ``debootstrap --variant=minbase`` with the mirror apt
  already uses, then ``docker import``;
- ``carebridge-local/kafka``: the native stack's Maven Central jars (``devstack/pom.xml``) plus
  ``kafka-tools`` (the healthcheck's tool) on Debian's OpenJDK 17;
- ``carebridge-local/postgres:15`` and ``carebridge-local/python:3.11``: Debian's packages;
- ``carebridge-local/prometheus``: built from its Go module on the host.

Each local image carries a label with the fingerprint of its recipe (files and inputs); an
image whose label matches is reused, so a second run builds nothing. Builds run with the
classic builder and ``--network host`` (the private engine has no NAT for bridge networks).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ._util import DevstackError, find_repo_root, tail
from .images import DEBIAN_BASE, IMAGES, ImageName, ImageSpec
from .kafka_jars import KAFKA_VERSION, cache_root, ensure_kafka_libs

RECIPE_LABEL = "org.carebridge.recipe"
COMPOSE_MODULE = "github.com/docker/compose/v2"
COMPOSE_VERSION = "v2.40.3"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
# Prometheus registers every cloud service discovery (AWS, Azure, Kubernetes ...) in
# plugins/plugins.go; the local build keeps only plugins/minimum.go's file and HTTP discovery
# (and static targets, which are built in): a fraction of the compile time and size.
PROMETHEUS_PLUGINS = (
    "// Only plugins/minimum.go's discovery (carebridge local build).\npackage plugins\n"
)
DEBIAN_SUITE = "bookworm"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
IMAGES_MODE_ENV = "CAREBRIDGE_IMAGES"  # auto (default) | public | local
# The build trusts what the host trusts when SSL_CERT_FILE is unset (Debian's bundle).
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def docker_cache() -> Path:
    return cache_root() / "docker"


# --------------------------------------------------------------------------- running steps


def run_step(
    console: Console,
    description: str,
    cmd: Sequence[str],
    *,
    log_name: str,
    hint: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> float:
    """Run ``cmd`` with a spinner and elapsed time, output to a log file; seconds taken.
    On failure: the log's last lines and ``hint`` (what to do next)."""
    log_dir = docker_cache() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{log_name}.log"
    started = time.monotonic()
    with console.status(f"{description} (log: {log_file})"), log_file.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )  # fmt: skip
        proc.communicate(stdin)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise DevstackError(
            f"{description} failed (exit {proc.returncode}) after {elapsed:.0f}s. Last lines "
            f"of {log_file}:\n{tail(log_file, 30)}",
            hint,
        )
    console.print(f"[green]✓[/] {description} [dim]({elapsed:.1f}s)[/]")
    return elapsed


def fingerprint(paths: Sequence[Path], *extra: str) -> str:
    """sha256 over the files under ``paths`` (names and bytes) and ``extra`` strings."""
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(str(file.relative_to(root.parent)).encode() + b"\0")
            digest.update(file.read_bytes())
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- the docker CLI


@dataclass
class Docker:
    """The docker client pointed at one engine (``env`` holds DOCKER_HOST when needed)."""

    console: Console
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        docker = shutil.which("docker")
        if docker is None:
            raise DevstackError("the docker client is not installed", "apt-get install docker.io")
        return [docker, *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = 600,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            self.command(*args), capture_output=True, text=input is None, timeout=timeout,
            env={**os.environ, **self.env}, check=False, input=input,
        )  # fmt: skip
        if check and out.returncode != 0:
            stderr = out.stderr if isinstance(out.stderr, str) else out.stderr.decode()
            raise DevstackError(
                f"docker {' '.join(args[:3])} failed (exit {out.returncode}): {stderr.strip()}",
                "check the engine (`docker info`) and rerun",
            )
        return out

    def label(self, image: str, name: str = RECIPE_LABEL) -> str | None:
        """The label's value on a local image; None when the image is missing."""
        out = self.run(
            "image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False
        )
        if out.returncode != 0:
            return None
        labels = json.loads(out.stdout or "null") or {}
        return str(labels.get(name, ""))

    def exists(self, image: str) -> bool:
        return self.label(image) is not None

    def pull(self, image: str) -> bool:
        out = self.run("pull", "--quiet", image, check=False, timeout=900)
        return out.returncode == 0

    def build(
        self,
        description: str,
        *,
        context: Path,
        tag: str,
        build_args: Mapping[str, str],
        log_name: str,
        labels: Mapping[str, str] | None = None,
    ) -> float:
        args = ["build", "--network", "host", "--tag", tag]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        # The classic builder: BuildKit needs the buildx plugin, which Debian's client lacks.
        return run_step(
            self.console, description, self.command(*args, str(context)), log_name=log_name,
            env={**self.env, "DOCKER_BUILDKIT": "0"},
            hint="read the log; a network error inside the build: check that apt/PyPI are "
            "reachable from the host (`docker build --network host` uses the host's network)",
        )  # fmt: skip


# --------------------------------------------------------------------------- Go builds


def go_build(
    console: Console,
    module: str,
    version: str,
    package: str,
    output: Path,
    *,
    replace_files: Mapping[str, str] | None = None,
    ldflags: str = "-s -w",
) -> Path:
    """``go build`` of ``package`` inside ``module@version`` from the Go module proxy, once:
    ``go install`` refuses modules with replace directives, so download, then build in place.
    ``replace_files`` (path in the module -> new content) builds a patched copy instead."""
    if output.is_file():
        return output
    go = shutil.which("go")
    if go is None:
        raise DevstackError(
            f"Go is not installed; it is needed once to build {module}",
            "apt-get install -y golang (1.24 or newer), or install the prebuilt binary yourself",
        )
    name = output.name
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise DevstackError(
            f"go mod download {module}@{version} failed: {out.stdout.strip()} {out.stderr.strip()}",
            "check that the Go module proxy is reachable (GOPROXY), then rerun",
        )
    source = Path(json.loads(out.stdout)["Dir"])
    if replace_files:
        patched = docker_cache() / "src" / f"{name}"
        shutil.rmtree(patched, ignore_errors=True)
        patched.parent.mkdir(parents=True, exist_ok=True)
        # the module cache is read-only: a writable copy
        subprocess.run(["cp", "-r", "--no-preserve=mode", str(source), str(patched)], check=True)
        for relative, content in replace_files.items():
            (patched / relative).write_text(content)
        source = patched
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(name + ".partial")
    cmd = [
        "nice", "-n", "10", go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial),
        package,
    ]  # fmt: skip
    run_step(
        console, f"Building {name} from the Go module {module}@{version} (first run only)",
        cmd, log_name=f"go-build-{name}", cwd=source,
        env={"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"},
        hint=f"read the log; the result is cached as {output}: a binary you put there is used",
    )  # fmt: skip
    partial.rename(output)
    if replace_files:
        shutil.rmtree(source, ignore_errors=True)
    return output


def compose_version(docker: Docker) -> str | None:
    out = docker.run("compose", "version", "--short", check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_compose_plugin(docker: Docker) -> str:
    """``docker compose`` works afterwards: the plugin is built from its Go module (cached)
    and installed in ``$DOCKER_CONFIG/cli-plugins`` (default ``~/.docker``) when missing."""
    version = compose_version(docker)
    if version:
        docker.console.print(f"[green]✓[/] docker compose {version}")
        return version
    binary = go_build(
        docker.console, COMPOSE_MODULE, COMPOSE_VERSION, "./cmd",
        docker_cache() / "bin" / f"docker-compose-{COMPOSE_VERSION}",
        ldflags=f"-s -w -X {COMPOSE_MODULE}/internal.Version={COMPOSE_VERSION}",
    )  # fmt: skip
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    plugin = config / "cli-plugins" / "docker-compose"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, plugin)
    plugin.chmod(0o755)
    version = compose_version(docker)
    if not version:
        raise DevstackError(
            f"installed {plugin} but `docker compose version` still fails",
            f"run `{plugin} version` to see why; remove {binary} to rebuild it",
        )
    docker.console.print(f"[green]✓[/] docker compose {version} installed as {plugin}")
    return version


# --------------------------------------------------------------------------- Debian base


def debian_mirrors(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """The Debian archive and security mirrors apt uses here (deb822 or one-line sources)."""
    override = os.environ.get("CAREBRIDGE_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/"), None
    uris: list[str] = []
    files = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*"))]
    for file in files:
        if not file.is_file() or not file.name.endswith((".list", ".sources")):
            continue
        text = file.read_text(errors="replace")
        uris += re.findall(r"^URIs:\s*(\S+)", text, flags=re.MULTILINE)
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.MULTILINE)
    archive = next((u for u in uris if re.search(r"/debian/?$", u)), DEFAULT_DEBIAN_MIRROR)
    security = next((u for u in uris if re.search(r"/debian-security/?$", u)), None)
    return archive.rstrip("/"), security.rstrip("/") if security else None


def ensure_debian_base(docker: Docker) -> str:
    archive, security = debian_mirrors()
    recipe = fingerprint([], "debootstrap minbase", DEBIAN_SUITE, archive, security or "", "v1")
    if docker.label(DEBIAN_BASE) == recipe:
        return recipe
    if os.geteuid() != 0:
        raise DevstackError(
            f"{DEBIAN_BASE} must be built with debootstrap, which needs root",
            "rerun as root, or set CAREBRIDGE_IMAGES=public where a registry answers",
        )
    if not shutil.which("debootstrap"):
        run_step(
            docker.console, "Installing debootstrap (apt-get)",
            ["apt-get", "install", "-y", "-qq", "debootstrap"], log_name="apt-debootstrap",
            env={"DEBIAN_FRONTEND": "noninteractive"}, hint="run `apt-get update` and rerun",
        )  # fmt: skip
    with tempfile.TemporaryDirectory(dir=docker_cache(), prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / DEBIAN_SUITE
        run_step(
            docker.console, f"debootstrap --variant=minbase {DEBIAN_SUITE} from {archive}",
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), archive],
            log_name="debootstrap",
            hint="check that the Debian mirror is reachable (CAREBRIDGE_DEBIAN_MIRROR overrides it)",
        )  # fmt: skip
        sources = [
            f"deb {archive} {DEBIAN_SUITE} main",
            f"deb {archive} {DEBIAN_SUITE}-updates main",
        ]
        if security:
            sources.append(f"deb {security} {DEBIAN_SUITE}-security main")
        (rootfs / "etc/apt/sources.list").write_text("\n".join(sources) + "\n")
        # as in Debian's own images: packages installed in a build never start services
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        for leftovers in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftovers).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
        docker.run(
            "import", "--change", 'CMD ["bash"]', "--change", f"LABEL {RECIPE_LABEL}={recipe}",
            "-", DEBIAN_BASE, input=tar.stdout,
        )  # fmt: skip
    docker.console.print(f"[green]✓[/] imported {DEBIAN_BASE}")
    return recipe


# --------------------------------------------------------------------------- local images


def recipe_dir(name: str) -> Path:
    return find_repo_root() / "containers" / name


def kafka_tools_jar(docker: Docker) -> Path:
    """``kafka-tools`` (BrokerApiVersionsCommand, the healthcheck's tool) beside the native
    stack's jars, from Maven Central, once."""
    target = docker_cache() / f"kafka-tools-{KAFKA_VERSION}"
    jar = target / f"kafka-tools-{KAFKA_VERSION}.jar"
    if jar.is_file():
        return jar
    run_step(
        docker.console, f"Fetching kafka-tools {KAFKA_VERSION} from Maven Central",
        ["mvn", "-q", "-B", "dependency:copy",
         f"-Dartifact=org.apache.kafka:kafka-tools:{KAFKA_VERSION}", f"-DoutputDirectory={target}"],
        log_name="maven-kafka-tools", hint="check that Maven Central is reachable",
    )  # fmt: skip
    return jar


def _stage_context(name: str, extra: Mapping[str, Path]) -> Path:
    """A build context: the recipe directory plus ``extra`` (name in context -> source)."""
    context = docker_cache() / "context" / name
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(recipe_dir(name), context)
    for target, source in extra.items():
        destination = context / target
        if source.is_dir():
            shutil.copytree(source, destination, copy_function=shutil.copy, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination)
    return context


def prometheus_module_version(image: str) -> str:
    """prom/prometheus:v3.5.0 is the Go module's v0.305.0 (3.x.y -> v0.3xx.y)."""
    match = re.search(r":v3\.(\d+)\.(\d+)$", image)
    if not match:
        raise DevstackError(f"cannot tell the Go module version of {image}", "use a v3.x.y tag")
    return f"v0.3{int(match.group(1)):02d}.{match.group(2)}"


def build_local(docker: Docker, spec: ImageSpec, base: str) -> None:
    """Build the local equivalent of ``spec`` unless an image with the same recipe exists."""
    extra: dict[str, Path] = {}
    inputs: list[str] = [base]
    if spec.name == "kafka":
        libs = ensure_kafka_libs(console=docker.console)
        extra = {"libs": libs, f"libs/{kafka_tools_jar(docker).name}": kafka_tools_jar(docker)}
        inputs += sorted(p.name for p in libs.glob("*.jar"))
    elif spec.name == "prometheus":
        version = prometheus_module_version(spec.public)
        binary = go_build(
            docker.console, PROMETHEUS_MODULE, version, "./cmd/prometheus",
            docker_cache() / "bin" / f"prometheus-{version}",
            replace_files={"plugins/plugins.go": PROMETHEUS_PLUGINS},
        )  # fmt: skip
        extra = {"prometheus": binary}
        inputs.append(version)
    recipe = fingerprint([recipe_dir(spec.name)], *inputs)
    if docker.label(spec.local) == recipe:
        docker.console.print(f"[green]✓[/] {spec.local} (built earlier, same recipe)")
        return
    context = _stage_context(spec.name, extra)
    try:
        docker.build(
            f"Building {spec.local} (stands in for {spec.public})", context=context,
            tag=spec.local, build_args={"DEBIAN_IMAGE": DEBIAN_BASE},
            labels={RECIPE_LABEL: recipe}, log_name=f"build-{spec.name}",
        )  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)


def choose_images(docker: Docker, names: Sequence[ImageName]) -> dict[ImageName, str]:
    """The image to run for each name: the variable when set; the public image when present
    or pullable (mode ``auto``/``public``); else (``auto``/``local``) the local build."""
    mode = os.environ.get(IMAGES_MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "public", "local"):
        raise DevstackError(
            f"{IMAGES_MODE_ENV}={mode}", f"set {IMAGES_MODE_ENV} to auto, public or local"
        )
    chosen: dict[ImageName, str] = {}
    base_ready = False
    registry_answers = mode != "local"
    for name in names:
        spec = IMAGES[name]
        given = os.environ.get(spec.variable, "").strip()
        if given:
            chosen[name] = given
            docker.console.print(f"[green]✓[/] {name}: {given} (from {spec.variable})")
            continue
        if registry_answers and (docker.exists(spec.public) or docker.pull(spec.public)):
            chosen[name] = spec.public
            docker.console.print(f"[green]✓[/] {name}: {spec.public}")
            continue
        if mode == "public":
            raise DevstackError(
                f"cannot pull {spec.public}", f"unset {IMAGES_MODE_ENV} to build it locally"
            )
        if registry_answers:
            docker.console.print(
                f"[yellow]![/] cannot pull {spec.public}: no registry answers; building local "
                "equivalents instead (ADR 0016)"
            )
            registry_answers = False  # one refusal is enough: do not ask again per image
        if not base_ready:
            ensure_debian_base(docker)
            base_ready = True
        build_local(docker, spec, DEBIAN_BASE)
        chosen[name] = spec.local
    return chosen


def image_env(chosen: Mapping[ImageName, str]) -> dict[str, str]:
    """The variables `docker-compose.yml` and ``endpoints`` read to run ``chosen``."""
    return {IMAGES[name].variable: image for name, image in chosen.items()}


# --------------------------------------------------------------------------- project images


@dataclass(frozen=True)
class ProjectImage:
    """One image `docker-compose.yml` builds from the repository's Dockerfile."""

    tag: str
    service_arg: str


def project_images(compose_file: Path) -> list[ProjectImage]:
    """Every distinct (image, SERVICE) that `docker-compose.yml` builds."""
    import yaml

    services = yaml.safe_load(compose_file.read_text())["services"]
    found: dict[str, ProjectImage] = {}
    for spec in services.values():
        if "build" in spec:
            found[spec["image"]] = ProjectImage(spec["image"], spec["build"]["args"]["SERVICE"])
    return list(found.values())


def stage_build_ca(root: Path) -> None:
    """Copy the CA bundle ``SSL_CERT_FILE`` names (else the host's, Debian's path) where the
    Dockerfile's build stage reads it (containers/build-ca/README.md); none: remove a stale copy."""
    target = root / "containers" / "build-ca" / "ca-bundle.pem"
    source = os.environ.get("SSL_CERT_FILE", "").strip() or SYSTEM_CA_BUNDLE
    if source and Path(source).is_file():
        data = Path(source).read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
    else:
        target.unlink(missing_ok=True)


def build_project_images(docker: Docker, python_image: str) -> None:
    """The services' images from the Dockerfile (the classic builder's cache keeps a second
    run to seconds)."""
    root = find_repo_root()
    stage_build_ca(root)
    for image in project_images(root / "docker-compose.yml"):
        docker.build(
            f"Building {image.tag} (SERVICE={image.service_arg}, FROM {python_image})",
            context=root, tag=image.tag,
            build_args={"SERVICE": image.service_arg, "PYTHON_IMAGE": python_image},
            log_name=f"build-{image.service_arg}",
        )  # fmt: skip
