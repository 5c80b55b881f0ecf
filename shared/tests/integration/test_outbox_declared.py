"""An outbox given the events its service declares refuses any other (real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carebridge_contracts import AssessmentCompleted, SafetyRiskFlagged
from carebridge_devstack.testing import sample_assessment
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.outbox import Outbox, UndeclaredEventError

pytestmark = pytest.mark.integration

PROCS = Path(__file__).parent.parent / "procs"
SCHEMA = "outbox_declared"


@pytest.fixture
async def pool(fresh_database_url: str):  # type: ignore[no-untyped-def]
    pool = await create_pool(fresh_database_url, SCHEMA)
    await migrate(pool, SCHEMA, PROCS / "migrations")
    yield pool
    await pool.close()


async def test_undeclared_event_is_refused_and_writes_nothing(pool) -> None:  # type: ignore[no-untyped-def]
    outbox = Outbox("intake", SCHEMA, publishes=(SafetyRiskFlagged,))

    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(UndeclaredEventError, match="add AssessmentCompleted to PUBLISHES"):
            await outbox.add(conn, sample_assessment("pat-1"))

    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_declared_event_is_written(pool) -> None:  # type: ignore[no-untyped-def]
    outbox = Outbox("intake", SCHEMA, publishes=(AssessmentCompleted, SafetyRiskFlagged))

    async with pool.acquire() as conn, conn.transaction():
        envelope = await outbox.add(conn, sample_assessment("pat-1"))

    assert await pool.fetchval("SELECT event_id FROM outbox") == envelope.event_id
