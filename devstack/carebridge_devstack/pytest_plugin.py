"""pytest plugin (``-p carebridge_devstack.pytest_plugin``): real Kafka and PostgreSQL.

Fixtures
  ``stack_endpoints``     (session)  :class:`StackEndpoints` with ``kafka_bootstrap`` and
                                     ``database_url``; see ``endpoints`` for the order
                                     env vars → Docker (testcontainers) → native stack.
  ``fresh_database_url``  (function) URL of a new, empty database ``t_<uuid8>``; dropped after.
  ``service_database_url`` (function) ``service_database_url("booking")``: the service's deploy
                                     step run in that fresh database (roles, schema, migrations
                                     as the owner role); returns the URL of its login role, which
                                     can use but not change its tables (ADR 0011, ADR 0014).
                                     ``service_database_url("booking", path)``: other migrations.
  ``unique_topic_prefix`` (function) e.g. ``"t3f9a1c2e."`` to keep topics of tests apart.
  ``smtp_sink``           (function) a running in-process :class:`SmtpSink` on a free port.

It also sets ``CAREBRIDGE_AUTH_PUBLIC_KEYS`` (unless set) to the dev signer's public key, and
``CAREBRIDGE_DEV_AUTH=true`` (unless set), so apps built in tests accept
``carebridge_devstack.testing.bearer`` tokens, and, once ``stack_endpoints`` is up, the stack's
Kafka login variables (the admin's, and each principal's password; ADR 0013), so every Kafka
client a test makes logs in.

Nothing heavy is imported at collection time: unit tests that use none of these
fixtures never touch Kafka, PostgreSQL, Docker or testcontainers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .endpoints import StackEndpoints
    from .smtp_sink import SmtpSink


def pytest_configure(config: pytest.Config) -> None:
    """Apps the tests build in-process trust tokens of the dev signer (ADR 0012), as the
    services the dev stack starts do; `carebridge_devstack.testing.bearer` signs with it. The
    dev flag lets them (a service refuses the dev issuer and key without it, ADR 0014)."""
    from carebridge_devstack.signer import DEV_AUTH_ENV, dev_signer

    os.environ.setdefault("CAREBRIDGE_AUTH_PUBLIC_KEYS", dev_signer().public_pem)
    for name, value in DEV_AUTH_ENV.items():
        os.environ.setdefault(name, value)


@pytest.fixture(scope="session")
def stack_endpoints() -> Iterator[StackEndpoints]:
    from ._util import DevstackError
    from .endpoints import provide_endpoints

    try:
        with provide_endpoints(owner="pytest") as endpoints:
            # Test harnesses and apps built in-process log in as the stack's Kafka admin;
            # services started as processes get their own principal (LocalSystem).
            os.environ.update(endpoints.kafka_env)
            yield endpoints
    except DevstackError as exc:
        pytest.fail(f"could not provide Kafka/PostgreSQL for tests:\n{exc}", pytrace=False)


@pytest.fixture
def fresh_database_url(stack_endpoints: StackEndpoints) -> Iterator[str]:
    from .endpoints import create_database, drop_database

    url = create_database(stack_endpoints.database_url)
    try:
        yield url
    finally:
        drop_database(url, via=stack_endpoints.database_url)


@pytest.fixture
def service_database_url(fresh_database_url: str) -> Callable[..., str]:
    from .endpoints import service_database_url as deploy

    def url_of(service: str, migrations: Path | None = None) -> str:
        return deploy(fresh_database_url, service, migrations)

    return url_of


@pytest.fixture
def unique_topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    from .smtp_sink import SmtpSink

    with SmtpSink(tmp_path / "mail") as sink:
        yield sink
