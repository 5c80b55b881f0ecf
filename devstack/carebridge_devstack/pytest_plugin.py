"""pytest plugin (``-p carebridge_devstack.pytest_plugin``): real Kafka and PostgreSQL.

Fixtures
  ``stack_endpoints``     (session)  :class:`StackEndpoints` with ``kafka_bootstrap`` and
                                     ``database_url``; see ``endpoints`` for the order
                                     env vars → Docker (testcontainers) → native stack.
  ``fresh_database_url``  (function) URL of a new, empty database ``t_<uuid8>``; dropped after.
  ``unique_topic_prefix`` (function) e.g. ``"t3f9a1c2e."`` to keep topics of tests apart.
  ``smtp_sink``           (function) a running in-process :class:`SmtpSink` on a free port.

Nothing heavy is imported at collection time: unit tests that use none of these
fixtures never touch Kafka, PostgreSQL, Docker or testcontainers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .endpoints import StackEndpoints
    from .smtp_sink import SmtpSink


@pytest.fixture(scope="session")
def stack_endpoints() -> Iterator[StackEndpoints]:
    from ._util import DevstackError
    from .endpoints import provide_endpoints

    try:
        with provide_endpoints(owner="pytest") as endpoints:
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
def unique_topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    from .smtp_sink import SmtpSink

    with SmtpSink(tmp_path / "mail") as sink:
        yield sink
