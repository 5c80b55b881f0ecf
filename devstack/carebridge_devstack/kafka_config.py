"""What a Kafka node is told: its place in the cluster (``NodeSpec``), its logins
(``SaslScram``), its listeners' protocol, its cluster id and its log4j configuration."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from carebridge_shared.kafka import SaslMechanism, SecurityProtocol

from .kafka_tls import TlsFiles

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


def random_cluster_id() -> str:
    """A Kafka cluster id: base64url of a random 16-byte UUID, unpadded (as StorageTool)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def server_properties(
    spec: NodeSpec,
    voters: Sequence[NodeSpec],
    data_dir: Path,
    sasl: SaslScram | None = None,
    tls: TlsFiles | None = None,
) -> dict[str, str]:
    """A combined broker+controller node's ``server.properties``."""
    n = len(voters)
    rf = min(3, n)
    min_isr = min(2, n)
    quorum = ",".join(f"{v.node_id}@{v.host}:{v.controller_port}" for v in voters)
    client = client_protocol(sasl, tls)
    listeners = (
        f"{client}://{spec.host}:{spec.port},CONTROLLER://{spec.host}:{spec.controller_port}"
    )
    controller = "PLAINTEXT" if sasl is None else "SASL_PLAINTEXT"
    return {
        "process.roles": "broker,controller",
        "node.id": str(spec.node_id),
        "controller.quorum.voters": quorum,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:{controller}",
        "inter.broker.listener.name": client,
        "controller.listener.names": "CONTROLLER",
        **_sasl_properties(sasl, client),
        **_controller_sasl_properties(sasl),
        **_authorizer_properties(sasl),
        **_tls_properties(tls),
        "log.dirs": str(data_dir),
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


def _sasl_properties(sasl: SaslScram | None, listener: str) -> dict[str, str]:
    if sasl is None:
        return {}
    mechanism = sasl.mechanism
    name, password = sasl.broker_login
    return {
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{name}" password="{password}";'
        ),
    }


def _controller_sasl_properties(sasl: SaslScram | None) -> dict[str, str]:
    """A login on the controller listener too: with a plaintext one, anyone reaching its
    port would talk to the controllers as ANONYMOUS, which the brokers' own connections
    need as a super user once an authorizer runs, i.e. a way round every ACL. KRaft
    controllers cannot check SCRAM (its credentials live in the metadata they serve), so
    the brokers' login is a static SASL/PLAIN user here, on 127.0.0.1 only."""
    if sasl is None:
        return {}
    name, password = sasl.broker_login
    return {
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{name}" password="{password}" user_{name}="{password}";'
        ),
    }


def _authorizer_properties(sasl: SaslScram | None) -> dict[str, str]:
    if sasl is None or not sasl.authorize:
        return {}
    return {
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(f"User:{name}" for name in sasl.users),
    }


def _tls_properties(tls: TlsFiles | None) -> dict[str, str]:
    if tls is None:
        return {}
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore),
        "ssl.truststore.type": "PEM",  # brokers replicate over TLS too: trust the dev CA
        "ssl.truststore.location": str(tls.ca),
    }
