"""Ordered SQL migrations against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from carebridge_shared.db import SHARED_MIGRATIONS, MigrationChanged, create_pool, discover, migrate

pytestmark = pytest.mark.integration


async def test_migrations_apply_once_in_order_and_concurrently(
    fresh_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    (tmp_path / "0002_b.sql").write_text("INSERT INTO a VALUES (1);")
    pool = await create_pool(fresh_database_url, "mig_test")
    try:
        results = await asyncio.gather(*(migrate(pool, "mig_test", tmp_path) for _ in range(3)))
        expected = [m.version for m in discover(SHARED_MIGRATIONS, "shared")]
        expected += ["service:0001_a", "service:0002_b"]
        assert sorted(results, key=len) == [[], [], expected], "one replica applies, others wait"
        assert await pool.fetchval("SELECT count(*) FROM a") == 1
        assert await migrate(pool, "mig_test", tmp_path) == []
    finally:
        await pool.close()


async def test_an_edited_applied_migration_is_refused(
    fresh_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int);")
    pool = await create_pool(fresh_database_url, "mig_edit")
    try:
        await migrate(pool, "mig_edit", tmp_path)
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (id int, name text);")
        with pytest.raises(MigrationChanged, match="add a new numbered migration"):
            await migrate(pool, "mig_edit", tmp_path)
    finally:
        await pool.close()
