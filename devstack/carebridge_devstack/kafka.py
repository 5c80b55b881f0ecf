"""Real Apache Kafka (KRaft, combined broker+controller) as plain JVM processes.

Jars come from Maven Central through ``devstack/pom.xml`` and are cached in
``~/.cache/carebridge/kafka-<version>/libs``. One :class:`KafkaNode` is one JVM; a
:class:`KafkaCluster` is 1..N nodes that are all brokers and controller voters
(static quorum ``controller.quorum.voters``), so the same code runs the default single
broker and a 3-node cluster (RF 3, min.insync.replicas 2) for fault tests.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from carebridge_ops.hints import devstack
from carebridge_shared.kafka import PLAINTEXT, KafkaSecurity, SaslMechanism, SecurityProtocol

from ._util import (
    DevstackError,
    file_contains,
    file_lock,
    pid_alive,
    port_in_use,
    proc_cmdline,
    read_pid,
    reap,
    run_async,
    spawn_supervised,
    tail,
    terminate,
    wait_until,
    write_private,
)
from .kafka_tls import TlsFiles, ensure_dev_certificates, tls_files

KAFKA_VERSION = "4.1.1"
READY_LINE = "Kafka Server started"
POM_PATH = Path(__file__).resolve().parent.parent / "pom.xml"
MIN_JAVA = 17


# --------------------------------------------------------------------------- jars


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
        started = time.monotonic()
        with log_file.open("wb") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            if console is not None:
                with Progress(
                    SpinnerColumn(),
                    TextColumn("[bold]{task.description}"),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                ) as progress:
                    progress.add_task(
                        f"Fetching Kafka {version} jars from Maven Central (first run only)",
                        total=None,
                    )
                    while proc.poll() is None:
                        time.sleep(0.1)
            rc = proc.wait()
        if rc != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
            raise DevstackError(
                f"Maven could not fetch Kafka {version} (exit {rc}). Last lines of "
                f"{log_file}:\n{tail(log_file, 25)}",
                "check that https://repo.maven.apache.org is reachable (proxy: "
                "~/.m2/settings.xml or MAVEN_OPTS), that the version exists "
                f"(CAREBRIDGE_KAFKA_VERSION), then rerun `{devstack('up')}`",
            )
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


def random_cluster_id() -> str:
    """A Kafka cluster id: base64url of a random 16-byte UUID, unpadded (as StorageTool)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


# --------------------------------------------------------------------------- nodes

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


_SCRAM_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class SaslScram:
    """Clients must log in with SASL/SCRAM: the client listener becomes SASL_PLAINTEXT and the
    ``users`` (name -> password) are stored in the cluster metadata when storage is formatted
    (so they take effect on a fresh data directory only). The first user is also the login
    the brokers use among themselves, and, with SASL/PLAIN, on the controller listener.

    With ``authorize``, the brokers authorize every request (KRaft ``StandardAuthorizer``, no
    ACL = denied) and these format-time users are the super users: every other principal is
    created later (``carebridge kafka provision``) and may do only what its ACLs allow."""

    users: Mapping[str, str]
    mechanism: SaslMechanism = "SCRAM-SHA-512"
    authorize: bool = False

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("SaslScram needs at least one user")
        for token in (*self.users, *self.users.values()):
            if not _SCRAM_TOKEN.match(token):  # they go into JAAS and --add-scram unquoted
                raise ValueError("SCRAM user names and passwords may use only [A-Za-z0-9._~-]")

    @property
    def broker_login(self) -> tuple[str, str]:
        return next(iter(self.users.items()))

    def format_args(self) -> list[str]:
        """``kafka-storage format`` arguments that bootstrap the users' credentials."""
        args: list[str] = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return args


def client_protocol(sasl: SaslScram | None, tls: TlsFiles | None) -> SecurityProtocol:
    """The client listener's protocol, which is also its listener name."""
    if sasl is not None:
        return "SASL_SSL" if tls is not None else "SASL_PLAINTEXT"
    return "SSL" if tls is not None else "PLAINTEXT"


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    port: int
    controller_port: int
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class KafkaNode:
    """One combined broker+controller JVM with its own directory under ``base_dir``."""

    def __init__(
        self,
        spec: NodeSpec,
        *,
        base_dir: Path,
        voters: Sequence[NodeSpec],
        libs_dir: Path | None = None,
        heap: str = "512m",
        sasl: SaslScram | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.spec = spec
        self.sasl = sasl
        self.tls = tls
        self.dir = base_dir / f"node-{spec.node_id}"
        self.voters = list(voters)
        self.libs_dir = libs_dir
        self.heap = heap
        self.config_path = self.dir / "server.properties"
        self.log4j_path = self.dir / "log4j2.xml"
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "logs" / "server.log"
        self.out_file = self.dir / "kafka.out"
        self.pid_file = self.dir / "kafka.pid"

    @property
    def node_id(self) -> int:
        return self.spec.node_id

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    # -- configuration

    def properties(self) -> dict[str, str]:
        n = len(self.voters)
        rf = min(3, n)
        min_isr = min(2, n)
        voters = ",".join(f"{v.node_id}@{v.host}:{v.controller_port}" for v in self.voters)
        s = self.spec
        client = client_protocol(self.sasl, self.tls)
        listeners = f"{client}://{s.host}:{s.port},CONTROLLER://{s.host}:{s.controller_port}"
        controller = "PLAINTEXT" if self.sasl is None else "SASL_PLAINTEXT"
        return {
            "process.roles": "broker,controller",
            "node.id": str(s.node_id),
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": f"{client}:{client},CONTROLLER:{controller}",
            "inter.broker.listener.name": client,
            "controller.listener.names": "CONTROLLER",
            **self._sasl_properties(client),
            **self._controller_sasl_properties(),
            **self._authorizer_properties(),
            **self._tls_properties(),
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "unclean.leader.election.enable": "false",
            # a broker killed with SIGKILL cannot re-register until its old session
            # expires (default 9 s): shorter, so fault tests restart in seconds
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
        }

    def _sasl_properties(self, listener: str) -> dict[str, str]:
        if self.sasl is None:
            return {}
        mechanism = self.sasl.mechanism
        name, password = self.sasl.broker_login
        return {
            "sasl.enabled.mechanisms": mechanism,
            "sasl.mechanism.inter.broker.protocol": mechanism,
            f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{name}" password="{password}";'
            ),
        }

    def _controller_sasl_properties(self) -> dict[str, str]:
        """A login on the controller listener too: with a plaintext one, anyone reaching its
        port would talk to the controllers as ANONYMOUS, which the brokers' own connections
        need as a super user once an authorizer runs, i.e. a way round every ACL. KRaft
        controllers cannot check SCRAM (its credentials live in the metadata they serve), so
        the brokers' login is a static SASL/PLAIN user here, on 127.0.0.1 only."""
        if self.sasl is None:
            return {}
        name, password = self.sasl.broker_login
        return {
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{name}" password="{password}" user_{name}="{password}";'
            ),
        }

    def _authorizer_properties(self) -> dict[str, str]:
        if self.sasl is None or not self.sasl.authorize:
            return {}
        return {
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{name}" for name in self.sasl.users),
        }

    def _tls_properties(self) -> dict[str, str]:
        if self.tls is None:
            return {}
        return {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.keystore),
            "ssl.truststore.type": "PEM",  # brokers replicate over TLS too: trust the dev CA
            "ssl.truststore.location": str(self.tls.ca),
        }

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# written by carebridge_devstack; regenerated on every start"]
        lines += [f"{key}={value}" for key, value in self.properties().items()]
        write_private(self.config_path, "\n".join(lines) + "\n")  # it holds the SASL logins
        self.log4j_path.write_text(LOG4J2_XML.format(log=self.log_file))

    def _libs(self) -> Path:
        if self.libs_dir is None:
            raise DevstackError("KafkaNode.libs_dir is not set (call ensure_kafka_libs first)")
        return self.libs_dir

    def _java_cmd(self, java: str, main: str, *args: str, server: bool = False) -> list[str]:
        cmd = [java]
        if server:
            cmd += [
                f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.log_file.parent}",
            ]  # fmt: skip
        else:
            cmd += ["-Xmx256m", "-XX:TieredStopAtLevel=1"]
        cmd += [f"-Dlog4j2.configurationFile={self.log4j_path}"]
        cmd += ["-cp", f"{self._libs()}/*", main, *args]
        return cmd

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def format(self, java: str, cluster_id: str) -> None:
        """``kafka.tools.StorageTool format`` (static quorum, so no ``--standalone``)."""
        if self.is_formatted():
            return
        self.write_config()
        cmd = self._java_cmd(
            java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
            str(self.config_path), "--ignore-formatted",
            *(self.sasl.format_args() if self.sasl else []),
        )  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
        if out.returncode != 0 or not self.is_formatted():
            raise DevstackError(
                f"formatting Kafka node {self.node_id} storage failed (exit {out.returncode}):\n"
                f"{(out.stdout + out.stderr).strip()[-3000:]}",
                f"remove {self.data_dir} (`{devstack('down --purge')}`) and retry",
            )

    # -- process

    def pid(self) -> int | None:
        """Pid of this node's JVM if it is running (checked against its command line)."""
        pid = read_pid(self.pid_file)
        if pid is None or not pid_alive(pid):
            return None
        if str(self.config_path) not in proc_cmdline(pid):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, java: str) -> int:
        if (pid := self.pid()) is not None:
            return pid
        for port in (self.spec.port, self.spec.controller_port):
            if port_in_use(port):
                raise DevstackError(
                    f"port {port} (Kafka node {self.node_id}) is in use by another process",
                    f"find it with `ss -ltnp | grep {port}` and stop it, or choose other ports "
                    "with CAREBRIDGE_KAFKA_PORT / CAREBRIDGE_KAFKA_CONTROLLER_PORT",
                )
        self.write_config()
        # a fresh log per start, so readiness is judged on this run only
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name("server.log.previous"))
        cmd = self._java_cmd(java, "kafka.Kafka", str(self.config_path), server=True)
        pid, _ = spawn_supervised(cmd, pid_file=self.pid_file, log_file=self.out_file, cwd=self.dir)
        return pid

    def started_line_seen(self) -> bool:
        return file_contains(self.log_file, READY_LINE)

    def diagnostics(self, lines: int = 25) -> str:
        return (
            f"--- {self.log_file} (last {lines} lines)\n{tail(self.log_file, lines)}\n"
            f"--- {self.out_file} (last 10 lines)\n{tail(self.out_file, 10)}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the JVM. For SIGKILL, return once the process is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            wait_until(lambda: not pid_alive(pid), 10, 0.02)
            self._after_exit(wait=5)

    def _after_exit(self, wait: float) -> None:
        reaper = read_pid(self.pid_file.with_name(self.pid_file.name + ".reaper"))
        reap(reaper, wait)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (controlled shutdown), SIGKILL after ``timeout``. True if clean."""
        pid = self.pid()
        if pid is None:
            self._after_exit(wait=1)
            return True
        clean = terminate(pid, timeout=timeout)
        self._after_exit(wait=5)
        self.pid_file.unlink(missing_ok=True)
        return clean


# --------------------------------------------------------------------------- cluster


async def _probe_all(
    bootstraps: list[str],
    expected_brokers: int,
    timeout_s: float,
    security: KafkaSecurity = PLAINTEXT,
) -> str | None:
    """``_probe`` each node on its own: every broker's metadata must show all brokers
    (clients such as aiokafka's admin do not refresh a metadata answer that lacks one)."""
    for bootstrap in bootstraps:
        problem = await _probe(bootstrap, expected_brokers, timeout_s, security)
        if problem is not None:
            return f"{bootstrap}: {problem}"
    return None


async def _probe(
    bootstrap: str, expected_brokers: int, timeout_s: float, security: KafkaSecurity = PLAINTEXT
) -> str | None:
    """None if an admin client can list topics and sees all brokers, else the reason."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
        client_id="carebridge-devstack-probe",
        **security.client_options(),
    )
    try:
        await admin.start()
        await admin.list_topics()
        cluster = await admin.describe_cluster()
        brokers = len(cluster.get("brokers", []))
        if brokers < expected_brokers:
            return f"{brokers}/{expected_brokers} brokers registered"
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


class KafkaCluster:
    """N combined broker+controller nodes (default 1) on consecutive port pairs.

    Node ``i`` (1-based) listens on ``port + 2*(i-1)`` and its controller on
    ``controller_port + 2*(i-1)``; defaults 29092/29093, 29094/29095, 29096/29097.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        nodes: int = 1,
        port: int = 29092,
        controller_port: int | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        host: str = "127.0.0.1",
        sasl: SaslScram | None = None,
        tls: bool = False,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self.base_dir = base_dir
        self.version = version
        cport = controller_port if controller_port is not None else port + 1
        specs = [
            NodeSpec(i, port + 2 * (i - 1), cport + 2 * (i - 1), host) for i in range(1, nodes + 1)
        ]
        overlap = {s.port for s in specs} & {s.controller_port for s in specs}
        if overlap:
            raise DevstackError(
                f"Kafka broker and controller ports overlap: {sorted(overlap)}",
                "choose CAREBRIDGE_KAFKA_CONTROLLER_PORT outside the broker port range",
            )
        self.sasl = sasl
        self.tls = tls_files(base_dir / "tls") if tls else None
        self.nodes = [
            KafkaNode(s, base_dir=base_dir, voters=specs, heap=heap, sasl=sasl, tls=self.tls)
            for s in specs
        ]
        self.cluster_id_file = base_dir / "cluster.id"
        self.topology_file = base_dir / "topology.json"

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def client_security(self) -> KafkaSecurity:
        """What clients need to connect: the first SASL user's login and the dev CA."""
        if self.sasl is None and self.tls is None:
            return PLAINTEXT
        name, password = self.sasl.broker_login if self.sasl else ("", "")
        return KafkaSecurity(
            client_protocol(self.sasl, self.tls),
            self.sasl.mechanism if self.sasl else "SCRAM-SHA-512",
            name,
            password,
            cafile=str(self.tls.ca) if self.tls else "",
        )

    def _bootstraps(self) -> list[str]:
        return [node.bootstrap for node in self.nodes]

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no Kafka node {node_id} (nodes: {[n.node_id for n in self.nodes]})")

    def running_pids(self) -> dict[int, int]:
        return {n.node_id: pid for n in self.nodes if (pid := n.pid()) is not None}

    def is_running(self) -> bool:
        return len(self.running_pids()) == len(self.nodes)

    def is_healthy(self, timeout: float = 5.0) -> bool:
        if not self.is_running():
            return False
        probe = functools.partial(
            _probe_all, self._bootstraps(), len(self.nodes), timeout, self.client_security
        )
        return run_async(probe) is None

    def _check_topology(self) -> None:
        sasl = self.sasl.mechanism if self.sasl else None
        wanted = {"nodes": len(self.nodes), "version": self.version, "sasl": sasl}
        if self.topology_file.exists():
            try:
                have = json.loads(self.topology_file.read_text())
            except ValueError:
                have = {}
            formatted = any(n.is_formatted() for n in self.nodes)
            if formatted and have.get("sasl") != sasl:
                raise DevstackError(
                    f"Kafka data in {self.base_dir} was formatted with SASL {have.get('sasl')}, "
                    f"now {sasl} requested (SCRAM users are stored when storage is formatted; "
                    "CAREBRIDGE_KAFKA_AUTH=none asks for a plaintext broker, the default is "
                    "SCRAM logins with ACLs)",
                    f"wipe it with `{devstack('down --purge')}` and start again "
                    "(or set CAREBRIDGE_KAFKA_AUTH as when the data was made)",
                )
            if have.get("nodes") != wanted["nodes"] and formatted:
                raise DevstackError(
                    f"Kafka data in {self.base_dir} was formatted for {have.get('nodes')} node(s), "
                    f"now {wanted['nodes']} requested",
                    f"wipe it with `{devstack('down --purge')}` and start again",
                )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.topology_file.write_text(json.dumps(wanted) + "\n")

    def prepare(self, console: Console | None = None) -> str:
        """Fetch jars, check Java, format storage. Returns the java executable."""
        java = find_java()
        libs = ensure_kafka_libs(self.version, console=console)
        for node in self.nodes:
            node.libs_dir = libs
        self._check_topology()
        if self.tls is not None:
            ensure_dev_certificates(self.tls.ca.parent, [self.nodes[0].spec.host, "localhost"])
        if self.cluster_id_file.exists():
            cluster_id = self.cluster_id_file.read_text().strip()
        else:
            cluster_id = random_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n")
        for node in self.nodes:
            node.format(java, cluster_id)
        return java

    def start(self, timeout: float = 90.0, console: Console | None = None) -> None:
        """Start every node that is not running and wait until the cluster is ready."""
        java = self.prepare(console)
        for node in self.nodes:
            node.start(java)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Ready = each node logged ``Kafka Server started`` and an admin client connects,
        lists topics and sees every broker."""
        deadline = time.monotonic() + timeout
        reason = "not started"
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if not n.is_running()]
            if dead:
                node = dead[0]
                raise DevstackError(
                    f"Kafka node {node.node_id} exited during startup.\n{node.diagnostics()}",
                    f"fix the cause shown above (full log: {node.log_file}); if its data is "
                    f"damaged run `{devstack('down --purge')}`",
                )
            waiting = [n for n in self.nodes if not n.started_line_seen()]
            if waiting:
                reason = f"node {waiting[0].node_id} has not logged '{READY_LINE}' yet"
                time.sleep(0.1)
                continue
            remaining = max(1.0, min(5.0, deadline - time.monotonic()))
            problem = run_async(
                functools.partial(
                    _probe_all, self._bootstraps(), len(self.nodes), remaining, self.client_security
                )
            )
            if problem is None:
                return
            reason = f"admin client: {problem}"
            time.sleep(0.2)
        node = self.nodes[0]
        raise DevstackError(
            f"Kafka was not ready within {timeout:.0f}s ({reason}).\n{node.diagnostics()}",
            f"read {node.log_file}; `{devstack('down')}` then `{devstack('up')}` to retry",
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop all nodes (SIGTERM together, SIGKILL after ``timeout``). True if all clean."""
        pids = {n.node_id: n.pid() for n in self.nodes}
        for node in self.nodes:
            pid = pids[node.node_id]
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        return all([node.stop(timeout) for node in self.nodes])

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        self.node(node_id).kill(sig)

    def restart_node(self, node_id: int, timeout: float = 90.0) -> None:
        node = self.node(node_id)
        node.stop()
        java = find_java()
        if node.libs_dir is None:
            node.libs_dir = ensure_kafka_libs(self.version)
        node.start(java)
        self.wait_ready(timeout)

    def purge(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)
