"""asyncpg pool per service schema, and ordered SQL migrations."""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from carebridge_shared import wakeup
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    """A connection, whether held directly or borrowed from a pool."""
else:
    Connection = asyncpg.Connection

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SHARED_MIGRATIONS = Path(str(resources.files("carebridge_shared") / "migrations"))


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"schema name {schema!r} must match {_SCHEMA_NAME.pattern}")
    return schema


async def create_pool(
    database_url: str, schema: str, *, max_size: int = 10, min_size: int = 1
) -> asyncpg.Pool:
    """A pool whose connections see `schema` first on their search path."""
    check_schema_name(schema)
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
        command_timeout=60,
        reset=wakeup.pool_reset,  # in-process wake-ups once a transaction is over
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only when not awaited
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


class MigrationChanged(RuntimeError):
    """An applied migration's file was edited: its new content would never run."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path, prefix: str) -> list[Migration]:
    files = sorted(p for p in directory.glob("*.sql") if p.is_file())
    return [Migration(version=f"{prefix}:{p.stem}", path=p) for p in files]


def shipped_migrations(service_migrations: Path) -> list[Migration]:
    """Every migration a service ships: the shared ones first, then its own."""
    return discover(SHARED_MIGRATIONS, "shared") + discover(service_migrations, "service")


async def migrate(
    pool: asyncpg.Pool, schema: str, service_migrations: Path, *, as_role: str | None = None
) -> list[str]:
    """Apply shared then service migrations, each once, in order; safe for concurrent runs.

    `as_role`: run them as that role (``SET ROLE``), so the objects they create belong to it;
    the deploy step runs them as the schema's owner role, never as the service (ADR 0014)."""
    check_schema_name(schema)
    migrations = shipped_migrations(service_migrations)
    applied: list[str] = []
    async with pool.acquire() as conn:
        lock_key = zlib.crc32(f"migrate:{schema}".encode())
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            if as_role is not None:
                await conn.execute(f'SET ROLE "{as_role}"')
            await _ensure_schema(conn, schema)
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now(),"
                " checksum text)"
            )
            await conn.execute(  # tables made before checksums were recorded
                f'ALTER TABLE "{schema}".schema_migrations ADD COLUMN IF NOT EXISTS checksum text'
            )
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch(
                    f'SELECT version, checksum FROM "{schema}".schema_migrations'
                )
            }
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] not in (None, migration.checksum):
                        raise MigrationChanged(
                            f"{schema}: migration {migration.version} ({migration.path}) changed "
                            "after it was applied, so its new content would never run. Restore "
                            "it and add a new numbered migration instead (on a throw-away dev "
                            f'database: DROP SCHEMA "{schema}" CASCADE).'
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                    await conn.execute(migration.path.read_text())
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, checksum)'
                        " VALUES ($1, $2)",
                        migration.version,
                        migration.checksum,
                    )
                applied.append(migration.version)
                log.info("migration_applied", schema=schema, version=migration.version)
        finally:
            if as_role is not None:
                await conn.execute("RESET ROLE")
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied


class MigrationsPending(RuntimeError):
    """The service's schema lacks a migration the service ships, or holds another version of
    one: the deploy step has not run for this version of the service."""


async def verify_migrations(
    pool: asyncpg.Pool, schema: str, service_migrations: Path, *, deploy_command: str
) -> None:
    """Refuse to go on unless every migration the service ships is applied with the same
    checksum. A service only checks: its role cannot change its schema (ADR 0014). Migrations the
    database has and the service does not ship (a newer version applied them) are fine."""
    check_schema_name(schema)
    async with pool.acquire() as conn:
        user = await conn.fetchval("SELECT current_user")
        try:
            rows = await conn.fetch(f'SELECT version, checksum FROM "{schema}".schema_migrations')
        except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError) as exc:
            raise MigrationsPending(
                f"schema {schema!r} has no migrations that role {user!r} can see ({exc}): run "
                f"the deploy step first: {deploy_command}"
            ) from None
    applied = {r["version"]: r["checksum"] for r in rows}
    shipped = shipped_migrations(service_migrations)
    changed = [m.version for m in shipped if applied.get(m.version) not in (None, m.checksum)]
    if changed:
        raise MigrationChanged(
            f"{schema}: migration(s) {', '.join(changed)} were applied with other content than "
            "this service ships: restore them and add a new numbered migration instead."
        )
    missing = [m.version for m in shipped if m.version not in applied]
    if missing:
        raise MigrationsPending(
            f"{schema}: {len(missing)} migration(s) not applied ({', '.join(missing)}); a service "
            f"never changes its own schema: run the deploy step first: {deploy_command}"
        )


class SchemaNotProvisioned(RuntimeError):
    """The service's schema is missing and its role may not create it."""


async def _ensure_schema(conn: Connection, schema: str) -> None:
    # CREATE SCHEMA IF NOT EXISTS checks the database's CREATE privilege even when the schema
    # exists, and a least-privilege service role (ADR 0011) does not have it.
    if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
        return
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    except asyncpg.InsufficientPrivilegeError as exc:
        user = await conn.fetchval("SELECT current_user")
        raise SchemaNotProvisioned(
            f"schema {schema!r} does not exist and role {user!r} may not create it: provision "
            f"it first (python -m carebridge_{schema} migrate with DATABASE_ADMIN_URL, ADR 0014)"
        ) from exc
