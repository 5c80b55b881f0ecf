"""The dev stack's Kafka logins: SCRAM users with random passwords per stack, and the
environment variables that hand each process its own (ADR 0013).

``CAREBRIDGE_KAFKA_AUTH`` chooses: ``scram`` (default) runs the brokers with SASL/SCRAM and
the StandardAuthorizer, one principal per service plus ops and an admin, provisioned from the
code's access plan; ``none`` runs them plaintext without ACLs, and only when asked for.

Everything is passed on as environment variables, the same the services and
`carebridge kafka provision` read: ``CAREBRIDGE_KAFKA_SECURITY_PROTOCOL``, ``..._SASL_*`` (a
login) and ``CAREBRIDGE_<ROLE>_KAFKA_PASSWORD`` (each principal's password). Tools and test
harnesses log in as the admin; whatever runs as a service logs in as that service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from carebridge_ops.hints import devstack
from carebridge_ops.kafka_access import ADMIN, password_variable
from carebridge_ops.kafka_access import principal_name as principal
from carebridge_shared.kafka import KafkaSecurity, SaslMechanism, SecurityProtocol, env_security

from ._util import DevstackError, write_private

KafkaAuth = Literal["scram", "none"]
AUTH_ENV = "CAREBRIDGE_KAFKA_AUTH"
MECHANISM: SaslMechanism = "SCRAM-SHA-512"
PROTOCOL: SecurityProtocol = "SASL_PLAINTEXT"  # the dev brokers listen on 127.0.0.1 only
BROKER = "broker"

SECURITY_VARIABLES = (
    "CAREBRIDGE_KAFKA_SECURITY_PROTOCOL",
    "CAREBRIDGE_KAFKA_SASL_MECHANISM",
    "CAREBRIDGE_KAFKA_SASL_USERNAME",
    "CAREBRIDGE_KAFKA_SASL_PASSWORD",
)


def kafka_auth_mode(value: str | None = None) -> KafkaAuth:
    """``CAREBRIDGE_KAFKA_AUTH`` (or `value`): scram unless ``none`` is asked for."""
    raw = (os.environ.get(AUTH_ENV, "") if value is None else value).strip().lower()
    if raw in ("", "scram"):
        return "scram"
    if raw == "none":
        return "none"
    raise DevstackError(
        f"{AUTH_ENV}={raw!r} is not a Kafka auth mode",
        f"set {AUTH_ENV}=scram (SASL/SCRAM logins and ACLs, the default) or {AUTH_ENV}=none "
        "(plaintext, no ACLs), or unset it",
    )


@dataclass(frozen=True)
class StackLogins:
    """The passwords of one stack's principals by role (``admin``, ``broker``, ``booking``,
    ``ops`` ...), kept in a file only its owner may read."""

    passwords: Mapping[str, str]

    @classmethod
    def load_or_create(cls, path: Path, roles: list[str]) -> StackLogins:
        """The stack's passwords; missing ones are made (random) and saved."""
        passwords: dict[str, str] = {}
        if path.exists():
            try:
                passwords = dict(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                raise DevstackError(
                    f"cannot read the Kafka logins in {path}: {exc}",
                    f"run `{devstack('down --purge')}` to start afresh",
                ) from exc
        wanted = [ADMIN, BROKER, *roles]
        if any(role not in passwords for role in wanted):
            for role in wanted:
                passwords.setdefault(role, secrets.token_urlsafe(24))
            write_private(path, json.dumps(passwords, indent=1, sort_keys=True) + "\n")
        return cls(passwords)

    def security(self, role: str) -> KafkaSecurity:
        return KafkaSecurity(PROTOCOL, MECHANISM, principal(role), self.passwords[role])

    def format_time_users(self) -> dict[str, str]:
        """Users stored when the brokers' storage is formatted: the brokers' own login (first)
        and the admin. They are the super users; every other one is provisioned."""
        return {principal(BROKER): self.passwords[BROKER], principal(ADMIN): self.passwords[ADMIN]}

    def managed_passwords(self) -> dict[str, str]:
        """Role -> password of the principals `carebridge kafka provision` creates."""
        return {r: p for r, p in self.passwords.items() if r not in (ADMIN, BROKER)}

    def env(self) -> dict[str, str]:
        """For tools and test harnesses: the admin's login, and every managed principal's
        password (the inputs of `carebridge kafka provision`; `LocalSystem` hands each
        service its own)."""
        return {
            **security_env(self.security(ADMIN)),
            **{password_variable(r): p for r, p in sorted(self.managed_passwords().items())},
        }


def adopt_stack_login(kafka_env: Mapping[str, str]) -> None:
    """This process (a tool such as the bench or the demo, which reads topics and checks
    groups) logs in with the stack's admin login from now on: every Kafka client it makes
    without explicit security takes the environment's (`env_security`)."""
    os.environ.update(kafka_env)


@contextlib.contextmanager
def stack_login(kafka_env: Mapping[str, str]) -> Iterator[None]:
    """`adopt_stack_login` for a block only (a chaos run inside a test session must not leave
    its private stack's login behind for the session's own stack)."""
    saved = {name: os.environ.get(name) for name in kafka_env}
    adopt_stack_login(kafka_env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def security_env(security: KafkaSecurity) -> dict[str, str]:
    env: dict[str, str] = {"CAREBRIDGE_KAFKA_SECURITY_PROTOCOL": security.protocol}
    if security.uses_sasl:
        env |= {
            "CAREBRIDGE_KAFKA_SASL_MECHANISM": security.sasl_mechanism,
            "CAREBRIDGE_KAFKA_SASL_USERNAME": security.username,
            "CAREBRIDGE_KAFKA_SASL_PASSWORD": security.password,
        }
    return env


def role_login_env(role: str, environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The ``CAREBRIDGE_KAFKA_SASL_USERNAME``/``_PASSWORD`` a process running as `role` gets:
    its principal and the password in ``CAREBRIDGE_<ROLE>_KAFKA_PASSWORD`` (protocol,
    mechanism and TLS files stay the environment's). None when that password is not known."""
    environ = os.environ if environ is None else environ
    password = environ.get(password_variable(role), "")
    if not password:
        return None
    return {
        "CAREBRIDGE_KAFKA_SASL_USERNAME": principal(role),
        "CAREBRIDGE_KAFKA_SASL_PASSWORD": password,
    }


def role_security(role: str) -> KafkaSecurity | None:
    """`role`'s login (see `role_login_env`) with the environment's protocol and TLS files;
    None when its password is unknown or the environment does not log in with SASL."""
    login = role_login_env(role)
    security = env_security()
    if login is None or not security.uses_sasl:
        return None
    return dataclasses.replace(
        security,
        username=login["CAREBRIDGE_KAFKA_SASL_USERNAME"],
        password=login["CAREBRIDGE_KAFKA_SASL_PASSWORD"],
    )


def password_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every ``CAREBRIDGE_<ROLE>_KAFKA_PASSWORD`` set: a service process must not inherit them."""
    environ = os.environ if environ is None else environ
    return [
        key for key in environ if key.startswith("CAREBRIDGE_") and key.endswith("_KAFKA_PASSWORD")
    ]
