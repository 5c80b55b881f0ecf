"""Comparing event-derived tables of two schemas, and copying API-owned inputs, on PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from carebridge_contracts.services import SERVICES
from carebridge_shared.db import create_pool, migrate
from carebridge_shared.projection import Compared, Copied, Projection, compare, copy_inputs

pytestmark = pytest.mark.integration

TABLES = """
CREATE TABLE items (
    id text PRIMARY KEY, owner text NOT NULL, amount int NOT NULL,
    closed_at timestamptz, source text NOT NULL DEFAULT 'event', touched_at timestamptz
);
CREATE TABLE contacts (id text PRIMARY KEY, email text, phone text, channel text NOT NULL);
"""

PROJECTION = Projection(
    compared=(
        Compared(
            "items",
            key=("id",),
            columns=("owner", "amount"),
            expressions=(("closed", "closed_at IS NOT NULL"),),
            where="owner <> 'ignored'",
            owned_by_api="source = 'api'",
        ),
    ),
    copied=(Copied("contacts", where="channel <> 'none'", masked=("email", "phone")),),
)


@pytest.fixture
async def conn(fresh_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_database_url)
    for schema in ("live", "rebuilt"):
        await connection.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}; {TABLES}")
    yield connection
    await connection.close()


async def insert(conn: asyncpg.Connection, schema: str, *rows: tuple[object, ...]) -> None:
    await conn.executemany(
        f"INSERT INTO {schema}.items (id, owner, amount, closed_at, source, touched_at)"
        " VALUES ($1, $2, $3, $4, $5, now())",
        rows,
    )


async def test_equal_tables_compare_equal_whatever_the_left_out_columns_say(
    conn: asyncpg.Connection,
) -> None:
    await insert(conn, "live", ("a", "p1", 1, None, "event"), ("b", "p2", 2, None, "event"))
    await insert(conn, "rebuilt", ("b", "p2", 2, None, "event"), ("a", "p1", 1, None, "event"))
    await conn.execute("UPDATE rebuilt.items SET touched_at = now() + interval '1 day'")
    result = await compare(conn, PROJECTION, live_schema="live", rebuilt_schema="rebuilt")
    [table] = result.tables
    assert result.equal and (table.live_rows, table.rebuilt_rows) == (2, 2)
    assert table.samples == ()


async def test_missing_extra_and_differing_rows_are_counted_and_shown(
    conn: asyncpg.Connection,
) -> None:
    await insert(
        conn, "live",
        ("same", "p", 1, None, "event"), ("gone", "p", 1, None, "event"),
        ("changed", "p", 1, None, "event"), ("ended", "p", 1, datetime(2026, 1, 1, tzinfo=UTC), "event"),
    )  # fmt: skip
    await insert(
        conn, "rebuilt",
        ("same", "p", 1, None, "event"), ("new", "p", 1, None, "event"),
        ("changed", "p", 5, None, "event"), ("ended", "p", 1, datetime(2026, 2, 2, tzinfo=UTC), "event"),
    )  # fmt: skip
    result = await compare(conn, PROJECTION, live_schema="live", rebuilt_schema="rebuilt")
    [table] = result.tables
    assert not result.equal
    assert (table.missing, table.extra, table.differing) == (1, 1, 1), "ended_at's time is left out"
    by_key = {str(s.key["id"]): s for s in table.samples}
    assert by_key["gone"].rebuilt is None and by_key["gone"].live == {
        "owner": "p", "amount": 1, "closed": False,
    }  # fmt: skip
    assert by_key["new"].live is None
    assert (by_key["changed"].live, by_key["changed"].rebuilt) == ({"amount": 1}, {"amount": 5})


async def test_rows_out_of_scope_or_owned_by_the_api_are_left_out_on_both_sides(
    conn: asyncpg.Connection,
) -> None:
    await insert(conn, "live", ("x", "ignored", 1, None, "event"), ("y", "p", 9, None, "api"))
    await insert(conn, "rebuilt", ("z", "ignored", 2, None, "event"), ("y", "p", 1, None, "event"))
    result = await compare(conn, PROJECTION, live_schema="live", rebuilt_schema="rebuilt")
    assert result.equal, result


async def test_inputs_are_copied_with_contact_details_masked(conn: asyncpg.Connection) -> None:
    await conn.executemany(
        "INSERT INTO live.contacts VALUES ($1, $2, $3, $4)",
        [
            ("c1", "jane@example.org", None, "email"),
            ("c2", None, "+15551234", "sms"),
            ("c3", "skip@example.org", None, "none"),
        ],
    )
    copied = await copy_inputs(conn, PROJECTION, live_schema="live", scratch_schema="rebuilt")
    assert copied == {"contacts": 2}
    rows = await conn.fetch("SELECT * FROM rebuilt.contacts ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("c1", "masked", None, "email"), ("c2", None, "masked", "sms"),
    ]  # fmt: skip


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_projection_matches_its_migrations(
    fresh_database_url: str, service: str
) -> None:
    """The declarations name real tables and columns: each compares and copies cleanly."""
    store = importlib.import_module(f"carebridge_{service}.store")
    app = importlib.import_module(f"carebridge_{service}.app")
    projection: Projection = store.PROJECTION
    schemas = (f"{service}_live", f"{service}_rebuilt")
    for schema in schemas:
        pool = await create_pool(fresh_database_url, schema, max_size=1)
        await migrate(pool, schema, Path(app.MIGRATIONS))
        await pool.close()
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await copy_inputs(conn, projection, live_schema=schemas[0], scratch_schema=schemas[1])
        result = await compare(conn, projection, live_schema=schemas[0], rebuilt_schema=schemas[1])
        assert result.equal and len(result.tables) == len(projection.compared)
    finally:
        await conn.close()
