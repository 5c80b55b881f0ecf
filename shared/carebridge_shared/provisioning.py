"""Least-privilege PostgreSQL roles and the deploy step that migrates a service's schema
(ADR 0011, ADR 0014).

Each service has two roles:

* ``carebridge_<service>_owner`` (NOLOGIN) owns the schema ``<service>`` and every object in it.
  Nobody logs in as it: the deploy step, logged in with admin credentials, ``SET ROLE``s to it
  to apply migrations.
* ``carebridge_<service>`` (LOGIN) is what the running service uses: ``USAGE`` on its schema,
  ``SELECT, INSERT, UPDATE, DELETE`` on its tables, ``USAGE`` on its sequences, only
  ``SELECT, INSERT`` on ``audit_log`` and only ``SELECT`` on ``schema_migrations``. It owns
  nothing and is no member of the owner role, so it cannot alter, drop, disable triggers or
  truncate anything, and cannot create tables.

The deploy step runs with admin credentials (a superuser; on PostgreSQL 16+ a role with
CREATEROLE that owns the database will do) the services never get. It is idempotent and safe to
run concurrently, so it runs on every deploy, from the service's own package, which ships the
migrations:

    DATABASE_ADMIN_URL=postgresql://postgres:...@db:5432/carebridge \\
    CAREBRIDGE_BOOKING_DB_PASSWORD=... python -m carebridge_booking migrate

``python -m carebridge_shared.provisioning SERVICE...`` does the roles and the schema only (no
migrations: the services then refuse to start until their ``migrate`` ran). A schema from
before the owner roles (owned by the login role or by the admin) is adopted: it and everything
in it change owner to the owner role, and the login role keeps only the grants above.
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
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from carebridge_shared.db import Connection, check_schema_name, create_pool, migrate
from carebridge_shared.logging import get_logger

log = get_logger(__name__)

ROLE_PREFIX = "carebridge_"
OWNER_SUFFIX = "_owner"
# Extensions the service migrations use. Installing one needs CREATE on the database, which
# service roles do not get (it would let them create schemas), so provisioning installs them.
EXTENSIONS = ("btree_gist",)
ADMIN_URL_ENV = "DATABASE_ADMIN_URL"
# What the login role may do with each table; every other table gets TABLE_PRIVILEGES.
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
RESTRICTED_TABLES = {
    "audit_log": "SELECT, INSERT",  # append-only: the trail the service cannot rewrite
    "schema_migrations": "SELECT",  # the service checks it at start, the deploy step writes it
}
SEQUENCE_PRIVILEGES = "USAGE, SELECT"
_SCRAM_ITERATIONS = 4096
_LOCK_KEY = zlib.crc32(b"carebridge-provisioning")


def service_role(service: str) -> str:
    """The role a service logs in as, e.g. ``carebridge_booking``."""
    return ROLE_PREFIX + check_schema_name(service)


def owner_role(service: str) -> str:
    """The role that owns a service's schema, e.g. ``carebridge_booking_owner`` (NOLOGIN)."""
    return service_role(service) + OWNER_SUFFIX


def password_env(service: str) -> str:
    """The variable the provisioning command reads a service's password from."""
    return f"CAREBRIDGE_{service.upper()}_DB_PASSWORD"


def deploy_command(service: str) -> str:
    """The deploy step that provisions and migrates a service's schema, as a shell line."""
    return (
        f"{ADMIN_URL_ENV}=postgresql://ADMIN@HOST/DB {password_env(service)}=... "
        f"python -m carebridge_{check_schema_name(service)} migrate"
    )


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
    """Create or update the service's owner and login roles, its schema and the login role's
    grants; return the URL the service uses. No migrations: see `deploy_service`."""
    login = service_role(service)
    if not password:
        raise ValueError(f"{login}: an empty password cannot log in; set {password_env(service)}")
    conn = await asyncpg.connect(admin_url, timeout=15)
    try:
        await _ensure_role(conn, owner_role(service), "NOLOGIN", None)
        await _ensure_role(conn, login, "LOGIN", password)
        await _ensure_schema(conn, service)
        await grant_service_privileges(conn, service)
    finally:
        await conn.close()
    log.info("database_roles_provisioned", role=login, owner=owner_role(service), schema=service)
    return service_url(admin_url, service, password)


async def migrate_service(admin_url: str, service: str, migrations: Path) -> list[str]:
    """Apply the shared and the service's migrations to its (provisioned) schema as its owner
    role, then grant the login role what the new tables need. Returns the versions applied."""
    pool = await create_pool(admin_url, service, max_size=1, min_size=1)
    try:
        applied = await migrate(pool, service, migrations, as_role=owner_role(service))
        async with pool.acquire() as conn:
            await grant_service_privileges(conn, service)
    finally:
        await pool.close()
    return applied


async def deploy_service(admin_url: str, service: str, password: str, migrations: Path) -> str:
    """The deploy step: provision, migrate as the owner, grant; return the service's URL."""
    url = await provision_service(admin_url, service, password)
    await migrate_service(admin_url, service, migrations)
    return url


async def _ensure_role(
    conn: asyncpg.Connection[asyncpg.Record], role: str, login: str, password: str | None
) -> None:
    # Roles belong to the whole server, and advisory locks to one database: several
    # provisioners (test sessions on their own databases) may race here, so retry.
    attributes = f"{login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    if password is not None:
        attributes += f" PASSWORD '{scram_verifier(password)}'"
    for attempt in range(1, 6):
        try:
            exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f'{verb} ROLE "{role}" {attributes}')
            return
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass  # created concurrently: alter it on the next round
        except asyncpg.InternalServerError as exc:
            if "concurrently" not in str(exc):
                raise
        await asyncio.sleep(0.05 * attempt)
    raise RuntimeError(f"could not create or update role {role}: other provisioners kept racing")


async def _ensure_schema(conn: asyncpg.Connection[asyncpg.Record], schema: str) -> None:
    owner, login = owner_role(schema), service_role(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        database = await conn.fetchval("SELECT current_database()")
        if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            # A CREATEROLE admin (PostgreSQL 16+) must be a member to hand objects to the owner
            # role and to SET ROLE to it for migrations.
            await conn.execute(f'GRANT "{owner}" TO CURRENT_USER')
        for extension in EXTENSIONS:
            await conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}" WITH SCHEMA public')
        # PostgreSQL < 15 let every role create in public; 15 and later no longer do.
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{login}"')
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{owner}"')
        await conn.execute(f'ALTER SCHEMA "{schema}" OWNER TO "{owner}"')
        await conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
        for statement in await conn.fetch(_ADOPT_OBJECTS, schema, owner):
            await conn.execute(statement[0])
        # The login role of the earlier design owned the schema; it must hold nothing now.
        if await conn.fetchval(_IS_MEMBER, login, owner):
            await conn.execute(f'REVOKE "{owner}" FROM "{login}"')


_IS_MEMBER = """
SELECT EXISTS (SELECT 1 FROM pg_auth_members
                WHERE member = $1::regrole AND roleid = $2::regrole)
"""


async def grant_service_privileges(conn: Connection, schema: str) -> None:
    """Give the login role exactly what the running service needs in its schema, for the
    objects there now and (default privileges) for those the owner's migrations add later.
    Idempotent; the restricted tables are set again after every migration run."""
    owner, login = owner_role(schema), service_role(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        statements = [
            f'REVOKE CREATE ON SCHEMA "{schema}" FROM "{login}"',
            f'GRANT USAGE ON SCHEMA "{schema}" TO "{login}"',
            f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{login}"',
            f'GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA "{schema}" TO "{login}"',
            f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM "{login}"',
            f'GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{login}"',
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}"'
            f' GRANT {TABLE_PRIVILEGES} ON TABLES TO "{login}"',
            f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}"'
            f' GRANT {SEQUENCE_PRIVILEGES} ON SEQUENCES TO "{login}"',
        ]
        for table, privileges in RESTRICTED_TABLES.items():
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".{table}'):
                statements += [
                    f'REVOKE ALL ON "{schema}".{table} FROM "{login}"',
                    f'GRANT {privileges} ON "{schema}".{table} TO "{login}"',
                ]
        for statement in statements:
            await conn.execute(statement)


class AuditTrailWritable(RuntimeError):
    """The service's database login could rewrite its audit trail: it must not start so."""


_AUDIT_TRAIL_POWERS = """
SELECT r.rolsuper AS superuser,
       pg_has_role(current_user, c.relowner, 'MEMBER') AS owner,
       array_remove(ARRAY[
           CASE WHEN has_any_column_privilege(c.oid, 'UPDATE') THEN 'UPDATE' END,
           CASE WHEN has_table_privilege(c.oid, 'DELETE') THEN 'DELETE' END,
           CASE WHEN has_table_privilege(c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
           CASE WHEN has_table_privilege(c.oid, 'TRIGGER') THEN 'TRIGGER' END,
           CASE WHEN has_any_column_privilege(c.oid, 'REFERENCES') THEN 'REFERENCES' END
       ], NULL) AS privileges
  FROM pg_class c JOIN pg_roles r ON r.rolname = current_user
 WHERE c.oid = to_regclass($1)
"""


async def refuse_writable_audit_trail(pool: asyncpg.Pool, schema: str) -> None:
    """Raise AuditTrailWritable when the pool's role is a superuser, a member of the owner of
    `schema`.audit_log, or holds more than SELECT and INSERT on it (on a column too)."""
    async with pool.acquire() as conn:
        user = await conn.fetchval("SELECT current_user")
        row = await conn.fetchrow(_AUDIT_TRAIL_POWERS, f'"{schema}".audit_log')
    if row is None:
        return  # no audit trail in this schema: nothing to protect
    reasons = [
        reason
        for reason, present in (
            ("a superuser", row["superuser"]),
            ("the owner of audit_log or a member of its owner role", row["owner"]),
            (f"granted {', '.join(row['privileges'])} on audit_log", row["privileges"]),
        )
        if present
    ]
    if reasons:
        raise AuditTrailWritable(
            f"role {user!r} could rewrite {schema}.audit_log (it is {'; '.join(reasons)}): "
            f"give the service its own login role, DATABASE_URL=postgresql://"
            f"{service_role(schema)}:...@HOST/DB, which the deploy step creates and grants "
            f"only SELECT and INSERT on audit_log: {deploy_command(schema)}"
        )


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


def _usage(command: str, missing: list[str]) -> str:
    return (
        f"usage: {ADMIN_URL_ENV}=postgresql://admin@host/db "
        f"CAREBRIDGE_<SERVICE>_DB_PASSWORD=... {command}\n"
        + "".join(f"missing: {name}\n" for name in missing)
    )


def _admin_failure(exc: BaseException) -> str:
    return (
        f"error: {type(exc).__name__}: {exc}\nnext step: check that {ADMIN_URL_ENV} reaches "
        "the database as a superuser (PostgreSQL 16+: CREATEROLE and owner of it)"
    )


def main(argv: list[str] | None = None) -> int:
    """Provision the named services' roles and schemas (no migrations: each service's
    ``python -m carebridge_<service> migrate`` is the whole deploy step)."""
    services = list(sys.argv[1:] if argv is None else argv)
    admin_url = os.environ.get(ADMIN_URL_ENV, "")
    missing = [password_env(s) for s in services if not os.environ.get(password_env(s))]
    if services and not admin_url:
        missing.append(ADMIN_URL_ENV)
    if not services or missing:
        print(_usage("python -m carebridge_shared.provisioning SERVICE...", missing), end="",
              file=sys.stderr)  # fmt: skip
        return 2

    async def provision_all() -> None:
        for service in services:
            await provision_service(admin_url, service, os.environ[password_env(service)])
            print(
                f"{service}: {owner_role(service)} owns schema {service}; the service logs in "
                f"as {service_role(service)}; next: python -m carebridge_{service} migrate"
            )

    try:
        asyncio.run(provision_all())
    except (OSError, asyncpg.PostgresError) as exc:
        print(_admin_failure(exc), file=sys.stderr)
        return 1
    return 0


def deploy_main(service: str, migrations: Path) -> int:
    """``python -m carebridge_<service> migrate``: the service's deploy step."""
    admin_url = os.environ.get(ADMIN_URL_ENV, "")
    password = os.environ.get(password_env(service), "")
    missing = [name for name, value in ((ADMIN_URL_ENV, admin_url),
                                        (password_env(service), password)) if not value]  # fmt: skip
    if missing:
        print(_usage(f"python -m carebridge_{service} migrate", missing), end="", file=sys.stderr)
        return 2

    async def deploy() -> list[str]:
        await provision_service(admin_url, service, password)
        return await migrate_service(admin_url, service, migrations)

    try:
        applied = asyncio.run(deploy())
    except (OSError, asyncpg.PostgresError) as exc:
        print(_admin_failure(exc), file=sys.stderr)
        return 1
    print(
        f"{service}: {len(applied)} migration(s) applied as {owner_role(service)}"
        + (f" ({', '.join(applied)})" if applied else "")
        + f"; the service logs in as {service_role(service)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
