"""Who may do what on Kafka: the SCRAM principals and their ACLs, derived from the code.

Nothing here is a hand-kept list. A service's principal may write the topics the contracts
registry says it owns (`TOPIC_OWNERS`, which its `PUBLISHES` must match), read the topics its
handlers subscribe to (registered offline, as `ServiceCode.consumed_topics` does), and write the
dead-letter topic of each of those; its consumer groups are the ones named after it. Ops reads
every topic and dead letter, writes for redrive and `replay --to-topic`, owns the redrive audit
topic and transaction, and manages consumer groups. The admin is a super user of the brokers
and is used only to provision (ADR 0013).

`carebridge kafka acls` prints this plan; `carebridge kafka provision` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from carebridge_contracts import OpsTopic, Topic, dlq_topic
from carebridge_contracts.registry import topics_owned_by
from carebridge_contracts.services import SERVICES
from carebridge_ops.dead_letters import REDRIVE_TRANSACTIONAL_ID

Resource = Literal["topic", "group", "transactional_id"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["read", "write", "delete"]

PRINCIPAL_PREFIX = "carebridge-"
ADMIN = "admin"
OPS = "ops"
ANY = "*"  # a literal resource name that matches every resource of its type


def principal_name(role: str) -> str:
    """The SCRAM user of a service (``carebridge-booking``) or of ops (``carebridge-ops``)."""
    return f"{PRINCIPAL_PREFIX}{role}"


ADMIN_PRINCIPAL = principal_name(ADMIN)


def password_variable(role: str) -> str:
    """The environment variable provisioning reads a principal's password from, in the shape
    of the database passwords': ``CAREBRIDGE_BOOKING_KAFKA_PASSWORD``."""
    return f"CAREBRIDGE_{role.upper()}_KAFKA_PASSWORD"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `operation` on the resource `name` (a prefix when `pattern` says so)."""

    resource: Resource
    name: str
    operation: Operation
    pattern: Pattern = "literal"
    why: str = ""

    def describe(self) -> str:
        name = f"{self.name}*" if self.pattern == "prefixed" else self.name
        return f"{self.operation.upper()} {self.resource} {name}"


@dataclass(frozen=True)
class Principal:
    role: str  # a service name or "ops"
    grants: tuple[Grant, ...]

    @property
    def name(self) -> str:
        return principal_name(self.role)

    def may(self, resource: Resource, operation: Operation) -> list[Grant]:
        return [g for g in self.grants if g.resource == resource and g.operation == operation]


def consumed_topics(service: str) -> list[str]:
    """The topics `service`'s handlers subscribe to (its code, registered offline)."""
    from carebridge_ops.services import load  # imports the service packages

    return load(service).consumed_topics()


def service_principal(service: str, consumed: list[str] | None = None) -> Principal:
    consumed = consumed_topics(service) if consumed is None else consumed
    grants = [
        Grant("topic", str(topic), "write", why="owned (registry TOPIC_OWNERS): its outbox relay")
        for topic in topics_owned_by(service)
    ]
    grants += [Grant("topic", t, "read", why="consumed (its handlers)") for t in consumed]
    grants += [
        Grant("topic", dlq_topic(t), "write", why="dead letters of what it consumes")
        for t in consumed
    ]
    if consumed:
        grants.append(
            Grant(
                "group",
                service,
                "read",
                "prefixed",
                why="its consumer groups (CAREBRIDGE_CONSUMER_GROUP defaults to the service)",
            )
        )
    return Principal(service, tuple(sorted(grants)))


def ops_principal() -> Principal:
    events = [str(topic) for topic in Topic]
    audit = str(OpsTopic.DLQ_REDRIVE_AUDIT)
    grants = [
        Grant("topic", t, "read", why="events tail, replay, projection rebuild") for t in events
    ]
    grants += [Grant("topic", dlq_topic(t), "read", why="dlq list, show, redrive") for t in events]
    grants += [
        Grant("topic", audit, "read", why="dlq audit; the redrive ledger"),
        Grant(
            "topic",
            ANY,
            "write",
            why="dlq redrive republishes to event topics and appends to the audit topic; "
            "replay --to-topic copies into any existing topic",
        ),
        Grant(
            "transactional_id",
            REDRIVE_TRANSACTIONAL_ID,
            "write",
            "prefixed",
            why="dlq redrive's transactional producer",
        ),
        Grant(
            "group",
            ANY,
            "read",
            why="replay --group, offsets export and import, projection rebuild --until-group",
        ),
        Grant("group", ANY, "delete", why="removing a finished replay group"),
    ]
    return Principal(OPS, tuple(sorted(grants)))


def access_plan() -> list[Principal]:
    """Every principal provisioning creates, services first, then ops (not the admin)."""
    return [*(service_principal(service) for service in SERVICES), ops_principal()]


def managed_roles() -> list[str]:
    return [*SERVICES, OPS]


def topics_to_create() -> list[str]:
    """The topics provisioning creates: every event topic and its dead-letter topic. The
    redrive audit topic has its own settings (one partition, kept forever)."""
    return [name for topic in Topic for name in (str(topic), dlq_topic(topic))]


def markdown_table(plan: list[Principal] | None = None) -> str:
    """The plan as the table in docs/security.md (a test keeps the two in step)."""
    plan = access_plan() if plan is None else plan
    lines = [
        "| principal | may write | may read | groups, transactions | derived from |",
        "| --- | --- | --- | --- | --- |",
    ]
    for principal in plan:
        reads = [g.name for g in principal.may("topic", "read")]
        writes = [g.name for g in principal.may("topic", "write")]
        dead_letters = sorted(dlq_topic(t) for t in reads)
        if principal.role != OPS and dead_letters and set(dead_letters) <= set(writes):
            writes = [w for w in writes if w not in dead_letters] + ["the `.dlq` of each it reads"]
        every_event_topic = set(topics_to_create())
        if every_event_topic <= set(reads):
            reads = ["every event topic and its `.dlq`"] + [
                r for r in reads if r not in every_event_topic
            ]
        others = [
            f"{g.operation} {g.resource.replace('_', ' ')} `{g.name}"
            f"{'*' if g.pattern == 'prefixed' else ''}`"
            for g in principal.grants
            if g.resource != "topic"
        ]
        source = (
            "ops tooling (`carebridge dlq`, `replay`, `offsets`, `projection`)"
            if principal.role == OPS
            else f"`TOPIC_OWNERS` (contracts registry); `carebridge_{principal.role}.handlers`"
        )
        lines.append(
            f"| `{principal.name}` | {_listed(writes)} | {_listed(reads)} "
            f"| {', '.join(others) or '-'} | {source} |"
        )
    lines.append(
        f"| `{ADMIN_PRINCIPAL}` | everything (super user) | everything | everything "
        "| used only to provision; the brokers' own login is the other super user |"
    )
    return "\n".join(lines)


def _listed(names: list[str]) -> str:
    return ", ".join(n if " " in n else f"`{n}`" for n in names) or "-"
