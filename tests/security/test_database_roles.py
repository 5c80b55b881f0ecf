"""Least privilege in PostgreSQL (ADR 0011, ADR 0014): each service's schema belongs to a NOLOGIN
owner role that only the deploy step becomes; the role a service logs in as can use its own
tables (and only SELECT and INSERT its audit log), and can change no schema object anywhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from carebridge_booking.app import MIGRATIONS as BOOKING_MIGRATIONS
from carebridge_devstack.endpoints import dev_database_password
from carebridge_devstack.testing import assessment_request, bearer, until_ready
from carebridge_intake.app import IntakeSettings, build
from carebridge_shared.db import (
    MigrationsPending,
    SchemaNotProvisioned,
    create_pool,
    migrate,
    shipped_migrations,
)
from carebridge_shared.provisioning import (
    ADMIN_URL_ENV,
    AuditTrailWritable,
    deploy_service,
    owner_role,
    password_env,
    provision_service,
    refuse_writable_audit_trail,
    scram_verifier,
    service_role,
    service_url,
)

pytestmark = pytest.mark.integration

ServiceUrl = Callable[..., str]


@pytest.fixture
async def booking_pool(service_database_url: ServiceUrl) -> AsyncIterator[asyncpg.Pool]:
    """Intake's and booking's schemas deployed (roles, migrations as the owners); booking's pool
    logged in as booking's own role."""
    service_database_url("intake")
    booking = await create_pool(service_database_url("booking"), "booking")
    try:
        yield booking
    finally:
        await booking.close()


async def test_a_service_role_cannot_read_another_services_tables(
    booking_pool: asyncpg.Pool,
) -> None:
    assert await booking_pool.fetchval("SELECT current_user") == "carebridge_booking"
    assert await booking_pool.fetchval("SELECT count(*) FROM appointments") == 0
    for table in ("intake.assessments", "intake.outbox", "intake.inbox"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await booking_pool.fetch(f"SELECT * FROM {table}")


async def test_a_service_role_can_create_and_alter_nothing_not_even_in_its_schema(
    booking_pool: asyncpg.Pool,
) -> None:
    for statement in (
        "CREATE TABLE intake.smuggled (id int)",
        "CREATE TABLE public.smuggled (id int)",
        "CREATE SCHEMA smuggled",
        "ALTER TABLE intake.assessments ADD COLUMN smuggled int",
        "CREATE ROLE smuggler",
        # its own schema belongs to the owner role: the service changes no table there either
        "CREATE TABLE booking_scratch (id int)",
        "CREATE VIEW booking_scratch AS SELECT 1",
        "ALTER TABLE appointments ADD COLUMN smuggled int",
        "ALTER TABLE appointments DISABLE TRIGGER ALL",
        "DROP TABLE outbox",
        "TRUNCATE inbox",
        "UPDATE schema_migrations SET checksum = NULL",
        "INSERT INTO schema_migrations (version) VALUES ('service:9999_forged')",
        "SET ROLE carebridge_booking_owner",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await booking_pool.execute(statement)
    attributes = await booking_pool.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert attributes is not None and not any(attributes.values())
    owners = await booking_pool.fetch(
        "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
        " WHERE relnamespace = 'booking'::regnamespace"
    )
    assert [r["owner"] for r in owners] == [owner_role("booking")]
    assert await booking_pool.fetchval(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'booking'"
    ) == owner_role("booking")


AUDIT_ROW = (
    "INSERT INTO audit_log (actor_sub, actor_role, action, resource_type, resource_id,"
    " patient_id, correlation_id) VALUES ('psy-1', 'clinician', 'read', 'appointment',"
    " 'a-1', 'p-1', gen_random_uuid())"
)
# Everything a service that wanted to hide what it did could try on its audit trail.
AUDIT_TAMPERING = (
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete",
    "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
    "DROP TRIGGER audit_log_no_truncate ON audit_log",
    "UPDATE audit_log SET actor_sub = 'someone-else'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "DROP TABLE audit_log",
    "ALTER TABLE audit_log RENAME TO audit_log_old",
    "ALTER TABLE audit_log OWNER TO carebridge_booking",
    "ALTER TABLE audit_log ALTER COLUMN actor_sub DROP NOT NULL",
    "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NULL; END $$",
    "DROP FUNCTION audit_log_refuse_change() CASCADE",
    "CREATE TABLE audit_log_copy (LIKE audit_log)",
    "SET ROLE carebridge_booking_owner",
)


async def test_a_service_role_can_only_append_to_and_read_its_audit_log(
    service_database_url: ServiceUrl,
) -> None:
    conn = await asyncpg.connect(service_database_url("booking"))
    try:
        await conn.execute("SET search_path TO booking")
        assert await conn.fetchval("SELECT current_user") == "carebridge_booking"
        await conn.execute(AUDIT_ROW)
        refused = []
        for statement in AUDIT_TAMPERING:
            try:
                await conn.execute(statement)
            except asyncpg.InsufficientPrivilegeError as exc:
                refused.append(statement)
                assert "append-only" not in str(exc), "refused by the grants, before any trigger"
        assert refused == list(AUDIT_TAMPERING), "every attempt refused"
        # A grant by a role without the grant option is a warning that grants nothing.
        await conn.execute("GRANT UPDATE, DELETE ON audit_log TO carebridge_booking")
        await conn.execute(AUDIT_ROW)
        rows = await conn.fetch("SELECT actor_sub, resource_id FROM audit_log ORDER BY id")
        assert [tuple(r) for r in rows] == [("psy-1", "a-1")] * 2
        grants = await conn.fetch(
            "SELECT privilege_type FROM information_schema.role_table_grants"
            " WHERE grantee = current_user AND table_schema = 'booking'"
            " AND table_name = 'audit_log' ORDER BY 1"
        )
        assert [r["privilege_type"] for r in grants] == ["INSERT", "SELECT"]
        assert not await conn.fetchval(
            "SELECT pg_has_role(current_user, $1, 'MEMBER')", owner_role("booking")
        )
        assert await conn.fetchval("SELECT has_table_privilege('appointments', 'UPDATE')")
    finally:
        await conn.close()


async def test_even_the_owner_role_cannot_change_audit_rows(
    service_database_url: ServiceUrl, fresh_database_url: str
) -> None:
    """The triggers stay as a second wall: the deploy step's role (the owner) may alter the
    table in a migration, but an UPDATE, DELETE or TRUNCATE of rows is refused for it too."""
    service_database_url("booking")
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute(f"SET ROLE {owner_role('booking')}; SET search_path TO booking")
        await conn.execute(AUDIT_ROW)  # row triggers fire only for rows that exist
        for statement in ("UPDATE audit_log SET actor_sub = 'x'", "DELETE FROM audit_log",
                          "TRUNCATE audit_log"):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_role_cannot_migrate_a_schema_nobody_provisioned(
    service_database_url: ServiceUrl, tmp_path: Path
) -> None:
    pool = await create_pool(service_database_url("booking"), "referral")
    try:
        with pytest.raises(SchemaNotProvisioned, match=r"python -m carebridge_referral migrate"):
            await migrate(pool, "referral", tmp_path)
    finally:
        await pool.close()


async def test_provisioning_adopts_schemas_of_the_earlier_designs_and_runs_again(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A schema the admin made (services migrated themselves as the superuser) and one the
    login role owned (ADR 0011) both end up owned by the owner role, with the login role's
    grants only; the deploy step is idempotent and later migrations' tables get the grants."""
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (id bigserial PRIMARY KEY);")
    admin = await create_pool(fresh_database_url, "referral")  # how services ran before roles
    try:
        await migrate(admin, "referral", tmp_path)
        # ... and then ADR 0011's login role owned the schema and its tables
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname ="
            " 'carebridge_referral') THEN CREATE ROLE carebridge_referral LOGIN; END IF; END $$;"
            " ALTER SCHEMA referral OWNER TO carebridge_referral;"
            " ALTER TABLE referral.notes OWNER TO carebridge_referral;"
            " ALTER TABLE referral.audit_log OWNER TO carebridge_referral"
        )
    finally:
        await admin.close()

    await deploy_service(fresh_database_url, "referral", "first", tmp_path)
    url = await deploy_service(fresh_database_url, "referral", "second", tmp_path)  # idempotent
    assert ":second@" in url and url.startswith("postgresql://carebridge_referral:")

    (tmp_path / "0002_more.sql").write_text(
        "ALTER TABLE notes ADD COLUMN body_ref uuid; CREATE TABLE tags (id bigserial, tag text);"
    )
    await deploy_service(fresh_database_url, "referral", "second", tmp_path)
    role = await create_pool(url, "referral")
    try:
        await role.execute("INSERT INTO notes (body_ref) VALUES (gen_random_uuid())")
        await role.execute("INSERT INTO tags (tag) VALUES ('x'); UPDATE tags SET tag = 'y'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await role.execute("DELETE FROM audit_log")
        owners = await role.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
            " WHERE relnamespace = 'referral'::regnamespace"
        )
        assert [r["owner"] for r in owners] == [owner_role("referral")]
        versions = await role.fetch("SELECT version FROM schema_migrations ORDER BY version")
        expected = [m.version for m in shipped_migrations(tmp_path)]
        assert sorted(r["version"] for r in versions) == sorted(expected)
    finally:
        await role.close()


async def test_concurrent_deploy_steps_apply_each_migration_once(fresh_database_url: str) -> None:
    urls = await asyncio.gather(
        *(
            deploy_service(fresh_database_url, "booking", "same", BOOKING_MIGRATIONS)
            for _ in range(3)
        )
    )
    assert len(set(urls)) == 1
    conn = await asyncpg.connect(fresh_database_url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM booking.schema_migrations")
    finally:
        await conn.close()
    assert count == len(shipped_migrations(BOOKING_MIGRATIONS))


def test_the_role_password_is_stored_as_a_scram_verifier() -> None:
    """The verifier completes RFC 7677's SCRAM-SHA-256 example exchange (password "pencil")."""
    salt = "W22ZaJ0SNY7soEsUEjb6gQ=="
    verifier = scram_verifier("pencil", base64.b64decode(salt))
    scheme, rounds_and_salt, keys = verifier.split("$")
    assert (scheme, rounds_and_salt) == ("SCRAM-SHA-256", f"4096:{salt}")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s={salt},i=4096,c=biws,r={nonce}".encode()
    server_signature = hmac.new(server_key, auth, "sha256").digest()
    assert base64.b64encode(server_signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth, "sha256").digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


async def test_a_service_runs_with_its_own_role(
    service_database_url: ServiceUrl,
    stack_endpoints: Any,
) -> None:
    settings = IntakeSettings(
        database_url=service_database_url("intake"),
        kafka_bootstrap_servers=stack_endpoints.kafka_bootstrap,
        consumer_group=f"intake-roles-{uuid.uuid4().hex[:8]}",
        consumer_offset_reset="latest",
    )
    app = build(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://intake") as client,
    ):
        await until_ready(client)
        patient = f"pat-{uuid.uuid4()}"
        response = await client.post(
            "/v1/assessments", json=assessment_request(patient), headers=bearer("patient", patient)
        )
        assert response.status_code == 201, response.text
        pool: asyncpg.Pool = app.state.context.pool
        assert await pool.fetchval("SELECT current_user") == "carebridge_intake"
        stored = "SELECT count(*) FROM assessments WHERE patient_id = $1"
        assert await pool.fetchval(stored, patient) == 1


def _intake_settings(database_url: str, kafka: str) -> IntakeSettings:
    return IntakeSettings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka,
        consumer_group=f"intake-roles-{uuid.uuid4().hex[:8]}",
        consumer_offset_reset="latest",
    )


async def test_a_service_will_not_start_before_the_deploy_step_migrated_it(
    fresh_database_url: str, stack_endpoints: Any
) -> None:
    url = await provision_service(fresh_database_url, "intake", "pw")  # roles, no migrations
    app = build(_intake_settings(url, stack_endpoints.kafka_bootstrap))
    with pytest.raises(MigrationsPending, match=r"python -m carebridge_intake migrate"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_service_will_not_start_as_a_role_that_could_rewrite_its_audit_log(
    service_database_url: ServiceUrl, fresh_database_url: str, stack_endpoints: Any
) -> None:
    login_url = service_database_url("intake")
    app = build(_intake_settings(fresh_database_url, stack_endpoints.kafka_bootstrap))
    with pytest.raises(AuditTrailWritable, match=r"superuser.*carebridge_intake"):
        async with app.router.lifespan_context(app):
            pass

    # A grant slipped in by hand, even on one column, is found; the next deploy step removes it.
    admin = await asyncpg.connect(fresh_database_url)
    try:
        await admin.execute("GRANT UPDATE (actor_sub) ON intake.audit_log TO carebridge_intake")
    finally:
        await admin.close()
    pool = await create_pool(login_url, "intake")
    try:
        with pytest.raises(AuditTrailWritable, match=r"granted UPDATE on audit_log"):
            await refuse_writable_audit_trail(pool, "intake")
        service_database_url("intake")
        await refuse_writable_audit_trail(pool, "intake")
    finally:
        await pool.close()


def test_the_deploy_command_migrates_and_the_service_then_logs_in_as_its_role(
    fresh_database_url: str,
) -> None:
    """`python -m carebridge_booking migrate` is the whole deploy step; it is idempotent."""
    env = {
        **os.environ,
        ADMIN_URL_ENV: fresh_database_url,
        password_env("booking"): dev_database_password("booking"),
    }
    command = [sys.executable, "-m", "carebridge_booking", "migrate"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    applied = len(shipped_migrations(BOOKING_MIGRATIONS))
    assert f"booking: {applied} migration(s) applied as carebridge_booking_owner" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "booking: 0 migration(s) applied" in again.stdout

    missing = subprocess.run(
        command, env={k: v for k, v in env.items() if k != ADMIN_URL_ENV},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and f"missing: {ADMIN_URL_ENV}" in missing.stderr

    async def current_user() -> str:
        url = service_url(fresh_database_url, "booking", dev_database_password("booking"))
        conn = await asyncpg.connect(url)
        try:
            return str(await conn.fetchval("SELECT current_user"))
        finally:
            await conn.close()

    assert asyncio.run(current_user()) == service_role("booking")
