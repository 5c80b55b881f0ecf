"""Least-privilege PostgreSQL roles: each service logs in as its own role, which owns its
schema and has no rights on any other service's schema (ADR 0011).

Provisioning runs with admin credentials (a superuser; on PostgreSQL 16+ a role with CREATEROLE
that owns the database will do); services never get them. It is idempotent, so it runs on every deploy:

    DATABASE_ADMIN_URL=postgresql://postgres:...@db:5432/carebridge \\
    CAREBRIDGE_BOOKING_DB_PASSWORD=... python -m carebridge_shared.provisioning booking

A schema an earlier, admin-run service created is adopted: it and everything in it change
owner to the service's role, so its later migrations can alter those tables.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sys
import unicodedata
import zlib
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from carebridge_shared.db import check_schema_name
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

ROLE_PREFIX = "carebridge_"
# Extensions the service migrations use. Installing one needs CREATE on the database, which
# service roles do not get (it would let them create schemas), so provisioning installs them.
EXTENSIONS = ("btree_gist",)
ADMIN_URL_ENV = "DATABASE_ADMIN_URL"
_SCRAM_ITERATIONS = 4096
_LOCK_KEY = zlib.crc32(b"carebridge-provisioning")


def service_role(service: str) -> str:
    """The role a service logs in as, e.g. ``carebridge_booking``."""
    return ROLE_PREFIX + check_schema_name(service)


def password_env(service: str) -> str:
    """The variable the provisioning command reads a service's password from."""
    return f"CAREBRIDGE_{service.upper()}_DB_PASSWORD"


def service_url(admin_url: str, service: str, password: str) -> str:
    """``admin_url`` with the service's role and password as its user: same server, database
    and query string, so the service sees exactly the database that was provisioned."""
    parts = urlsplit(admin_url)
    hosts = parts.netloc.rpartition("@")[2]
    user = f"{quote(service_role(service), safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{user}@{hosts}"))


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password``, so the password itself never
    appears in a statement (statement logs would keep it)."""
    salt = salt or secrets.token_bytes(16)
    normalized = unicodedata.normalize("NFKC", password).encode()  # SASLprep, for ASCII exact
    salted = hashlib.pbkdf2_hmac("sha256", normalized, salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def provision_service(admin_url: str, service: str, password: str) -> str:
    """Create or update the service's role and schema; return the URL the service uses."""
    role = service_role(service)
    if not password:
        raise ValueError(f"{role}: an empty password cannot log in; set {password_env(service)}")
    conn = await asyncpg.connect(admin_url, timeout=15)
    try:
        await _ensure_role(conn, role, password)
        await _ensure_schema(conn, service, role)
    finally:
        await conn.close()
    log.info("database_role_provisioned", role=role, schema=service)
    return service_url(admin_url, service, password)


async def _ensure_role(conn: asyncpg.Connection[asyncpg.Record], role: str, password: str) -> None:
    # Roles belong to the whole server, and advisory locks to one database: several
    # provisioners (test sessions on their own databases) may race here, so retry.
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    verifier = scram_verifier(password)
    for attempt in range(1, 6):
        try:
            exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE \"{role}\" {attributes} PASSWORD '{verifier}'")
            return
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass  # created concurrently: alter it on the next round
        except asyncpg.InternalServerError as exc:
            if "concurrently" not in str(exc):
                raise
        await asyncio.sleep(0.05 * attempt)
    raise RuntimeError(f"could not create or update role {role}: other provisioners kept racing")


async def _ensure_schema(conn: asyncpg.Connection[asyncpg.Record], schema: str, role: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        database = await conn.fetchval("SELECT current_database()")
        for extension in EXTENSIONS:
            await conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}" WITH SCHEMA public')
        # PostgreSQL < 15 let every role create in public; 15 and later no longer do.
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{role}"')
        await conn.execute(f'ALTER SCHEMA "{schema}" OWNER TO "{role}"')
        await conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
        for statement in await conn.fetch(_ADOPT_OBJECTS, schema, role):
            await conn.execute(statement[0])


# Statements that give `role` ($2) every object in `schema` ($1) it does not own yet. Sequences
# and indexes of a table follow the table; only free-standing sequences are named.
_ADOPT_OBJECTS = """
SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, $2::text)
  FROM pg_class c
 WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND c.relowner <> $2::regrole
UNION ALL
SELECT format('ALTER SEQUENCE %s OWNER TO %I', c.oid::regclass, $2::text)
  FROM pg_class c
 WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'S' AND c.relowner <> $2::regrole
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $2::text)
  FROM pg_proc p
 WHERE p.pronamespace = $1::regnamespace AND p.proowner <> $2::regrole
UNION ALL
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, $2::text)
  FROM pg_type t
 WHERE t.typnamespace = $1::regnamespace AND t.typowner <> $2::regrole
   AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND EXISTS (
        SELECT 1 FROM pg_class k WHERE k.oid = t.typrelid AND k.relkind = 'c')))
"""


def main(argv: list[str] | None = None) -> int:
    """Provision the named services with $DATABASE_ADMIN_URL and their password variables."""
    services = list(sys.argv[1:] if argv is None else argv)
    admin_url = os.environ.get(ADMIN_URL_ENV, "")
    missing = [password_env(s) for s in services if not os.environ.get(password_env(s))]
    if not services or not admin_url or missing:
        print(
            "usage: DATABASE_ADMIN_URL=postgresql://admin@host/db "
            "CAREBRIDGE_<SERVICE>_DB_PASSWORD=... python -m carebridge_shared.provisioning "
            "SERVICE...\n"
            + (f"missing: {', '.join(missing)}\n" if missing else "")
            + ("missing: DATABASE_ADMIN_URL\n" if services and not admin_url else ""),
            file=sys.stderr,
        )
        return 2

    async def provision_all() -> None:
        for service in services:
            await provision_service(admin_url, service, os.environ[password_env(service)])
            print(f"{service}: role {service_role(service)} owns schema {service}")

    try:
        asyncio.run(provision_all())
    except (OSError, asyncpg.PostgresError) as exc:
        print(
            f"error: {type(exc).__name__}: {exc}\nnext step: check that DATABASE_ADMIN_URL "
            "reaches the database as a superuser (PostgreSQL 16+: CREATEROLE and owner of it)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
