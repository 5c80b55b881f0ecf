"""`carebridge kafka acls|provision`: the Kafka principals and ACLs the code implies, and
applying them to a cluster with admin credentials (ADR 0013)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from carebridge_ops import kafkaio
from carebridge_ops.console import Bootstrap, OpsError, bootstrap_servers, fail, out, quiet_logs
from carebridge_ops.kafka_access import (
    ADMIN_PRINCIPAL,
    access_plan,
    managed_roles,
    markdown_table,
    password_variable,
    principal_name,
)

app = typer.Typer(
    help="Kafka principals and ACLs: show them, provision them.", no_args_is_help=True
)


@app.callback()
def _callback() -> None:
    quiet_logs()


@app.command("acls")
def acls_command(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The table of docs/security.md.")
    ] = False,
) -> None:
    """Print every principal and its ACLs, derived from the code (no Kafka needed)."""
    plan = access_plan()
    if markdown:
        out().print(markdown_table(plan), markup=False)
        return
    for principal in plan:
        out().print(f"{principal.name}", markup=False)
        for grant in principal.grants:
            out().print(f"  ALLOW {grant.describe():<60} {grant.why}", markup=False)


PROVISION_HELP = f"""Create the Kafka SCRAM users, their ACLs and every topic, as the code says.

Run it with the brokers' admin login (a super user) on every deploy: it is idempotent and prints what it did. It reads the environment, like the services:

  KAFKA_BOOTSTRAP_SERVERS: the brokers (or --bootstrap)
  CAREBRIDGE_KAFKA_SECURITY_PROTOCOL: SASL_PLAINTEXT or SASL_SSL
  CAREBRIDGE_KAFKA_SASL_MECHANISM: SCRAM-SHA-512 (default) or SCRAM-SHA-256; users get the same
  CAREBRIDGE_KAFKA_SASL_USERNAME: the admin, e.g. {ADMIN_PRINCIPAL}
  CAREBRIDGE_KAFKA_SASL_PASSWORD: the admin's password
  CAREBRIDGE_KAFKA_SSL_CAFILE (and _CERTFILE, _KEYFILE): TLS files, for SASL_SSL
{chr(10).join(f"  {password_variable(role)}: password of {principal_name(role)}" for role in managed_roles())}

A user whose password variable is unset keeps its password (it must exist already). The ACLs of these users become exactly the plan (`carebridge kafka acls`): missing ones are created, others of theirs removed (--no-prune keeps them). Missing topics are created with --partitions and --replication-factor. Each service then logs in as its own user (CAREBRIDGE_KAFKA_SASL_USERNAME and _PASSWORD).
"""


@app.command("provision", help=PROVISION_HELP)
def provision_command(
    bootstrap: Bootstrap = None,
    partitions: Annotated[int, typer.Option(help="Partitions of the topics created.", min=1)] = 3,
    replication_factor: Annotated[
        int | None,
        typer.Option(help="Replication factor of the topics created [default: min(3, brokers)]."),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Remove ACLs of carebridge users that the plan does not have.")
    ] = True,
) -> None:
    from carebridge_ops.kafka_provision import provision

    try:
        servers = bootstrap_servers(bootstrap)
        passwords = {
            role: os.environ[password_variable(role)]
            for role in managed_roles()
            if os.environ.get(password_variable(role))
        }
        provision(
            servers,
            kafkaio.security(),
            passwords,
            partitions=partitions,
            replication_factor=replication_factor,
            prune=prune,
            echo=lambda line: out().print(line, markup=False),
        )
    except OpsError as exc:
        fail(str(exc))
