"""Kafka's jars and the Java that runs them.

Jars come from Maven Central through ``devstack/pom.xml`` and are cached in
``~/.cache/carebridge/kafka-<version>/libs`` (``cache_root``, which other dev stack tools share).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from carebridge_ops.hints import devstack

from ._util import DevstackError, file_lock, tail

KAFKA_VERSION = "4.1.1"
POM_PATH = Path(__file__).resolve().parent.parent / "pom.xml"
MIN_JAVA = 17


def cache_root() -> Path:
    override = os.environ.get("CAREBRIDGE_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "carebridge"


def _pom_fingerprint(version: str) -> str:
    try:
        pom = POM_PATH.read_bytes()
    except OSError as exc:
        raise DevstackError(
            f"Maven project file {POM_PATH} is missing",
            "run the dev stack from a carebridge checkout (devstack/pom.xml lists the Kafka jars)",
        ) from exc
    return hashlib.sha256(pom + version.encode()).hexdigest()


def _libs_complete(libs: Path, marker: Path, fingerprint: str) -> bool:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    jars = data.get("jars", [])
    return (
        data.get("fingerprint") == fingerprint
        and bool(jars)
        and all((libs / jar).is_file() for jar in jars)
    )


def ensure_kafka_libs(
    version: str = KAFKA_VERSION, *, console: Console | None = None, root: Path | None = None
) -> Path:
    """Return the directory holding Kafka ``version``'s jars, fetching them with Maven once.

    A ``.complete`` marker (pom fingerprint + jar list) written after a successful fetch
    lets later runs skip Maven entirely.
    """
    base = (root or cache_root()) / f"kafka-{version}"
    libs, marker = base / "libs", base / ".complete"
    fingerprint = _pom_fingerprint(version)
    if _libs_complete(libs, marker, fingerprint):
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base.parent / f"kafka-{version}.lock"):
        if _libs_complete(libs, marker, fingerprint):  # fetched by a concurrent process
            return libs
        started = time.monotonic()
        staging = _fetch_with_maven(version, base, console)
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        marker.write_text(
            json.dumps({"fingerprint": fingerprint, "version": version, "jars": jars}, indent=1)
        )
        if console is not None:
            console.print(
                f"[green]Fetched {len(jars)} Kafka jars[/] in {time.monotonic() - started:.1f}s "
                f"into {libs}"
            )
        return libs


def _fetch_with_maven(version: str, base: Path, console: Console | None) -> Path:
    """Copy Kafka ``version``'s jars with Maven into a staging directory under ``base``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError(
            "Maven (mvn) is not installed; it is needed once to fetch the Kafka jars",
            "apt-get install -y maven  (or put mvn on PATH), then rerun",
        )
    staging = base / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log_file = base / "maven.log"
    cmd = [
        mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM_PATH),
        "dependency:copy-dependencies", f"-Dkafka.version={version}",
        f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    with log_file.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if console is not None:
            _spin_until_exit(
                proc, f"Fetching Kafka {version} jars from Maven Central (first run only)", console
            )
        rc = proc.wait()
    if rc != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
        raise DevstackError(
            f"Maven could not fetch Kafka {version} (exit {rc}). Last lines of "
            f"{log_file}:\n{tail(log_file, 25)}",
            "check that https://repo.maven.apache.org is reachable (proxy: "
            "~/.m2/settings.xml or MAVEN_OPTS), that the version exists "
            f"(CAREBRIDGE_KAFKA_VERSION), then rerun `{devstack('up')}`",
        )
    return staging


def _spin_until_exit(proc: subprocess.Popen[bytes], description: str, console: Console) -> None:
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        progress.add_task(description, total=None)
        while proc.poll() is None:
            time.sleep(0.1)


def find_java() -> str:
    """Path of a Java >= 17 runtime (``$JAVA_HOME/bin/java`` or ``java`` on PATH)."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    hint = "apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME to a JDK >= 17)"
    if not java or not Path(java).exists():
        raise DevstackError("no Java runtime found (Kafka 4 needs Java 17+)", hint)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise DevstackError(f"cannot tell the version of {java}: {out.stderr.strip()}", hint)
    major = int(match.group(1))
    if major == 1 and match.group(2):  # 1.8 style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise DevstackError(f"{java} is Java {major}; Kafka 4 brokers need Java 17+", hint)
    return java
