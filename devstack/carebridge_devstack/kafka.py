"""Real Apache Kafka (KRaft, combined broker+controller) as plain JVM processes.

A :class:`KafkaCluster` is 1..N :class:`~.kafka_node.KafkaNode` JVMs that are all brokers and
controller voters (static quorum ``controller.quorum.voters``), so the same code runs the
default single broker and a 3-node cluster (RF 3, min.insync.replicas 2) for fault tests.
Their jars and Java: :mod:`.kafka_jars`; their configuration: :mod:`.kafka_config`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import time
from pathlib import Path

from rich.console import Console

from carebridge_ops.hints import devstack
from carebridge_shared.kafka import PLAINTEXT, KafkaSecurity

from ._util import DevstackError, run_async
from .kafka_config import NodeSpec, SaslScram, client_protocol, random_cluster_id
from .kafka_jars import KAFKA_VERSION, ensure_kafka_libs, find_java
from .kafka_node import READY_LINE, KafkaNode
from .kafka_tls import ensure_dev_certificates, tls_files


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
