"""Apply the Kafka access plan to a cluster with admin credentials: SCRAM users, ACLs, topics.

Idempotent: users whose password is given get it (SCRAM upsert), ACLs are made exactly the
plan's for the principals carebridge manages (missing ones created, others of theirs removed),
missing topics are created; everything already right is left alone. Each step is printed.
aiokafka has no API for SCRAM users or ACLs, so this uses confluent-kafka's AdminClient;
only ops and the dev stack depend on it, never the services.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from carebridge_contracts import OpsTopic
from carebridge_ops.console import OpsError
from carebridge_ops.dead_letters import AUDIT_TOPIC_CONFIGS
from carebridge_ops.kafka_access import (
    Grant,
    Principal,
    access_plan,
    password_variable,
    topics_to_create,
)
from carebridge_shared.kafka import KafkaSecurity

SCRAM_ITERATIONS = 8192
DEFAULT_PARTITIONS = 3
TIMEOUT_S = 30.0

_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATIONS = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "delete": AclOperation.DELETE,
}
_MECHANISMS = {
    "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
    "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512,
}

USER_MECHANISM = "SCRAM-SHA-512"

Echo = Callable[[str], None]


@dataclass
class ProvisionReport:
    users: dict[str, str] = field(default_factory=dict)  # principal -> created/updated/kept
    acls_created: int = 0
    acls_kept: int = 0
    acls_removed: int = 0
    topics_created: list[str] = field(default_factory=list)
    topics_kept: int = 0

    def summary(self) -> str:
        users = ", ".join(f"{name} {what}" for name, what in self.users.items())
        return (
            f"users: {users}; ACLs: {self.acls_created} created, {self.acls_removed} removed, "
            f"{self.acls_kept} already there; topics: {len(self.topics_created)} created, "
            f"{self.topics_kept} already there"
        )


def confluent_config(bootstrap_servers: str, security: KafkaSecurity) -> dict[str, Any]:
    """librdkafka's names for the settings a `KafkaSecurity` holds."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "security.protocol": security.protocol,
    }
    if security.uses_sasl:
        config |= {
            "sasl.mechanism": security.sasl_mechanism,
            "sasl.username": security.username,
            "sasl.password": security.password,
        }
    if security.uses_tls:
        optional = {
            "ssl.ca.location": security.cafile,
            "ssl.certificate.location": security.certfile,
            "ssl.key.location": security.keyfile,
            "ssl.key.password": security.key_password,
        }
        config |= {key: value for key, value in optional.items() if value}
    return config


def binding(principal: Principal, grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCES[grant.resource],
        grant.name,
        _PATTERNS[grant.pattern],
        f"User:{principal.name}",
        "*",
        _OPERATIONS[grant.operation],
        AclPermissionType.ALLOW,
    )


def _name(value: object) -> str:
    """An ACL field's enum name (confluent-kafka types them as enum, str or int)."""
    return value.name if isinstance(value, Enum) else str(value)


def _key(acl: AclBinding) -> tuple[str, ...]:
    return (
        _name(acl.restype),
        acl.name,
        _name(acl.resource_pattern_type),
        acl.principal,
        acl.host,
        _name(acl.operation),
        _name(acl.permission_type),
    )


class Provisioner:
    """One admin connection; `run` applies the plan."""

    def __init__(self, bootstrap_servers: str, admin: KafkaSecurity, *, echo: Echo = print) -> None:
        self._login_errors: list[str] = []
        self.admin_login = admin.describe()
        # users get the admin's SCRAM mechanism; an admin with a static PLAIN login (docker
        # compose's broker) gives them SCRAM-SHA-512, what the services log in with by default
        self.mechanism = (
            admin.sasl_mechanism if admin.sasl_mechanism in _MECHANISMS else USER_MECHANISM
        )
        self.echo = echo
        self.client = AdminClient(
            confluent_config(bootstrap_servers, admin)
            # librdkafka's own log lines would repeat each refused login on stderr; error_cb
            # collects the reasons for one message instead
            | {"error_cb": self._on_error, "log_level": 0, "socket.timeout.ms": 10_000}
        )
        self.bootstrap_servers = bootstrap_servers

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError._TRANSPORT):
            # "<url>: SASL authentication error: ... (after 333ms in state AUTH_REQ)"
            reason = re.sub(r" \(after \d+ms in state \w+\)$", "", error.str())
            self._login_errors.append(reason)

    def _wait(self, future: Future[Any], what: str) -> Any:
        try:
            return future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in (KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                                KafkaError.TOPIC_AUTHORIZATION_FAILED):  # fmt: skip
                raise OpsError(
                    f"{what}: refused for {self.admin_login}, which is not a super user of the "
                    "brokers. Run provisioning with the admin login (super.users)."
                ) from None
            if error.code() == KafkaError.SECURITY_DISABLED:
                raise OpsError(
                    f"{what}: the brokers run no authorizer, so there are no ACLs to set. "
                    "Configure authorizer.class.name=org.apache.kafka.metadata.authorizer."
                    "StandardAuthorizer (see docs/security.md), or run the stack without "
                    "Kafka auth (CAREBRIDGE_KAFKA_AUTH=none) and skip provisioning."
                ) from None
            raise OpsError(f"{what} failed: {error.str()}") from None
        except TimeoutError:
            raise OpsError(f"{what}: no answer within {TIMEOUT_S:.0f}s") from None

    def check_login(self) -> int:
        """The number of brokers. OpsError saying why when the admin login does not work or
        is no super user (checked first: librdkafka 2.16 aborts the process when a SCRAM
        request is refused for lack of rights)."""
        try:
            cluster = self.client.describe_cluster(
                include_authorized_operations=True, request_timeout=15
            ).result(timeout=20)
        except (KafkaException, TimeoutError) as exc:
            self.client.poll(0)  # runs error_cb with the brokers' reasons
            detail = exc.args[0].str() if isinstance(exc, KafkaException) else "no answer"
            why = "; ".join(dict.fromkeys(self._login_errors[:3])) or detail
            raise OpsError(
                f"cannot log in to Kafka at {self.bootstrap_servers} as {self.admin_login}: "
                f"{why}. Set the admin's login in CAREBRIDGE_KAFKA_SECURITY_PROTOCOL, "
                "CAREBRIDGE_KAFKA_SASL_USERNAME and CAREBRIDGE_KAFKA_SASL_PASSWORD (and the "
                "CAREBRIDGE_KAFKA_SSL_* files for TLS), then run it again."
            ) from None
        allowed = set(cluster.authorized_operations or ())
        if not {AclOperation.ALTER, AclOperation.CREATE} <= allowed:
            raise OpsError(
                f"{self.admin_login} may not manage users, ACLs and topics (it lacks ALTER and "
                "CREATE on the cluster): run provisioning with the brokers' admin login, a "
                "super user (super.users)."
            )
        return len(cluster.nodes)

    # -- users

    def users(
        self, plan: list[Principal], passwords: Mapping[str, str], report: ProvisionReport
    ) -> None:
        every_user = cast(Future[Any], self.client.describe_user_scram_credentials())
        existing = set(self._wait(every_user, "list users"))
        mechanism = _MECHANISMS[self.mechanism]
        upserts: list[UserScramCredentialAlteration] = []
        for principal in plan:
            password = passwords.get(principal.role)
            if password:
                upserts.append(
                    UserScramCredentialUpsertion(
                        principal.name,
                        ScramCredentialInfo(mechanism, SCRAM_ITERATIONS),
                        password.encode(),
                    )
                )
                report.users[principal.name] = (
                    "password set" if principal.name in existing else "created"
                )
            elif principal.name in existing:
                report.users[principal.name] = "kept (no password given)"
            else:
                raise OpsError(
                    f"{principal.name} does not exist and no password is given: set "
                    f"{password_variable(principal.role)} and run it again."
                )
        if upserts:
            for name, future in self.client.alter_user_scram_credentials(upserts).items():
                self._wait(future, f"set the SCRAM credential of {name}")
        for name, what in report.users.items():
            self.echo(f"user {name}: {what} ({self.mechanism})")

    # -- ACLs

    def acls(self, plan: list[Principal], report: ProvisionReport, *, prune: bool) -> None:
        wanted = {_key(binding(p, g)): binding(p, g) for p in plan for g in p.grants}
        have = self._acls_of(plan)
        missing = [acl for key, acl in wanted.items() if key not in have]
        extra = [acl for key, acl in have.items() if key not in wanted] if prune else []
        report.acls_kept = len(wanted) - len(missing)
        if missing:
            for acl, future in self.client.create_acls(missing).items():
                self._wait(future, f"create ACL {acl}")
                self.echo(f"acl + {_describe(acl)}")
        if extra:
            filters = [_exact_filter(acl) for acl in extra]
            for _, future in self.client.delete_acls(filters).items():
                self._wait(future, "remove an ACL that the plan no longer has")
            for acl in extra:
                self.echo(f"acl - {_describe(acl)} (not in the plan)")
        report.acls_created, report.acls_removed = len(missing), len(extra)
        self._until_acls(plan, set(wanted), prune=prune)

    def _acls_of(self, plan: list[Principal]) -> dict[tuple[str, ...], AclBinding]:
        found: dict[tuple[str, ...], AclBinding] = {}
        for principal in plan:
            query = AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type]  # None matches any name (the library's docs)
                ResourcePatternType.ANY,
                f"User:{principal.name}",
                None,  # type: ignore[arg-type]  # any host
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            for acl in self._wait(self.client.describe_acls(query), "list ACLs"):
                found[_key(acl)] = acl
        return found

    def _until_acls(
        self, plan: list[Principal], wanted: set[tuple[str, ...]], *, prune: bool
    ) -> None:
        """Brokers apply ACL records from the metadata log a moment after the controller took
        them: wait until they are in force, so a service started next is not refused."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            have = set(self._acls_of(plan))
            if wanted <= have and (not prune or have <= wanted):
                return
            if time.monotonic() > deadline:
                raise OpsError(f"the brokers did not show the ACLs within {TIMEOUT_S:.0f}s")
            time.sleep(0.2)

    # -- topics

    def topics(self, report: ProvisionReport, *, partitions: int, replication_factor: int) -> None:
        existing = set(self.client.list_topics(timeout=15).topics)
        audit = str(OpsTopic.DLQ_REDRIVE_AUDIT)
        new = [
            NewTopic(t, partitions, replication_factor)
            for t in topics_to_create()
            if t not in existing
        ]
        if audit not in existing:  # one partition keeps the audit in the order it was written
            new.append(NewTopic(audit, 1, replication_factor, config=dict(AUDIT_TOPIC_CONFIGS)))
        report.topics_kept = len(topics_to_create()) + 1 - len(new)
        if not new:
            return
        for name, future in self.client.create_topics(new, request_timeout=TIMEOUT_S).items():
            try:
                future.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # made meanwhile
                    raise OpsError(f"create topic {name} failed: {exc.args[0].str()}") from None
            report.topics_created.append(name)
            self.echo(f"topic {name}: created")


def provision(
    bootstrap_servers: str,
    admin: KafkaSecurity,
    passwords: Mapping[str, str],
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication_factor: int | None = None,
    prune: bool = True,
    plan: list[Principal] | None = None,
    echo: Echo = print,
) -> ProvisionReport:
    """Users, ACLs and topics as the plan says; `passwords` by role (``booking``, ``ops``).
    The replication factor defaults to min(3, brokers)."""
    if not admin.uses_sasl:
        raise OpsError(
            "provisioning logs in as the Kafka admin with SASL (SCRAM or PLAIN): set "
            "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT (or SASL_SSL) and the admin's "
            "CAREBRIDGE_KAFKA_SASL_USERNAME and CAREBRIDGE_KAFKA_SASL_PASSWORD."
        )
    plan = access_plan() if plan is None else plan
    provisioner = Provisioner(bootstrap_servers, admin, echo=echo)
    brokers = provisioner.check_login()
    report = ProvisionReport()
    provisioner.topics(
        report,
        partitions=partitions,
        replication_factor=replication_factor or min(3, brokers),
    )
    provisioner.users(plan, passwords, report)
    provisioner.acls(plan, report, prune=prune)
    echo(f"provisioned Kafka at {bootstrap_servers}: {report.summary()}")
    return report


def _describe(acl: AclBinding) -> str:
    suffix = "*" if acl.resource_pattern_type == ResourcePatternType.PREFIXED else ""
    resource = _name(acl.restype).lower()
    return f"ALLOW {acl.principal} {_name(acl.operation)} {resource} {acl.name}{suffix}"


def _exact_filter(acl: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        acl.restype,
        acl.name,
        acl.resource_pattern_type,
        acl.principal,
        acl.host,
        acl.operation,
        acl.permission_type,
    )
