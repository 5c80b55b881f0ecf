"""One Kafka node: a combined broker+controller JVM with its own directory, configured,
formatted, started, killed and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from carebridge_ops.hints import devstack

from ._util import (
    DevstackError,
    file_contains,
    pid_alive,
    port_in_use,
    proc_cmdline,
    read_pid,
    reap,
    spawn_supervised,
    tail,
    terminate,
    wait_until,
    write_private,
)
from .kafka_config import LOG4J2_XML, NodeSpec, SaslScram, server_properties
from .kafka_tls import TlsFiles

READY_LINE = "Kafka Server started"


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
        return server_properties(self.spec, self.voters, self.data_dir, self.sasl, self.tls)

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
