"""The audit log is append-only in PostgreSQL itself: the service's role may only INSERT and
SELECT (ADR 0014); the owner role's triggers are tested in tests/security/test_database_roles.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from carebridge_shared import audit
from carebridge_shared.auth import Principal
from carebridge_shared.correlation import correlation_scope
from carebridge_shared.db import create_pool

pytestmark = pytest.mark.integration

PSYCHIATRIST = Principal("psy-1", "clinician")


@pytest.fixture
async def pool(
    service_database_url: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[asyncpg.Pool]:
    """Booking's schema (shared migrations only), as booking's own role."""
    pool = await create_pool(service_database_url("booking", tmp_path), "booking")
    try:
        yield pool
    finally:
        await pool.close()


async def test_rows_record_who_what_when_and_the_request(pool: asyncpg.Pool) -> None:
    correlation = uuid.uuid4()
    with correlation_scope(correlation):
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, PSYCHIATRIST, "read", "care_plan", "p-1", "p-1")
            await audit.record_many(
                conn,
                Principal("p-1", "patient"),
                "read",
                [
                    audit.Access("appointment", "a-1", "p-1"),
                    audit.Access("appointment", "a-2", "p-1"),
                ],
            )
    async with pool.acquire() as conn:
        rows = await audit.trail(conn, "p-1", limit=10)
    assert [(r.actor_role, r.actor_sub, r.action, r.resource_id) for r in rows] == [
        ("clinician", "psy-1", "read", "p-1"),
        ("patient", "p-1", "read", "a-1"),
        ("patient", "p-1", "read", "a-2"),
    ]
    assert {r.correlation_id for r in rows} == {correlation}
    assert rows[0].occurred_at <= rows[2].occurred_at


async def test_a_rolled_back_change_leaves_no_row(pool: asyncpg.Pool) -> None:
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await audit.record(conn, PSYCHIATRIST, "update", "care_plan", "p-2", "p-2")
            raise RuntimeError("the change failed")
    async with pool.acquire() as conn:
        assert await audit.trail(conn, "p-2", limit=10) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor_sub = 'someone-else'",
        "UPDATE audit_log SET occurred_at = now() - interval '1 year' WHERE patient_id = 'p-3'",
        "DELETE FROM audit_log WHERE patient_id = 'p-3'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_rows_cannot_be_changed_or_removed(pool: asyncpg.Pool, statement: str) -> None:
    async with pool.acquire() as conn:
        await audit.record(conn, PSYCHIATRIST, "read", "appointment", "a-3", "p-3")
        assert await conn.fetchval("SELECT current_user") == "carebridge_booking"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement)
        rows = await audit.trail(conn, "p-3", limit=10)
    assert [(r.actor_sub, r.resource_id) for r in rows] == [("psy-1", "a-3")]
