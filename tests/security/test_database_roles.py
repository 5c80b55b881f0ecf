"""Least privilege in PostgreSQL (ADR 0011): each service's role owns its schema, nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from carebridge_booking.app import MIGRATIONS as BOOKING_MIGRATIONS
from carebridge_devstack.testing import assessment_request, bearer, until_ready
from carebridge_intake.app import MIGRATIONS as INTAKE_MIGRATIONS
from carebridge_intake.app import IntakeSettings, build
from carebridge_shared.db import SchemaNotProvisioned, create_pool, migrate
from carebridge_shared.provisioning import provision_service, scram_verifier, service_role

pytestmark = pytest.mark.integration

ServiceUrl = Callable[[str], str]


@pytest.fixture
async def booking_pool(service_database_url: ServiceUrl) -> AsyncIterator[asyncpg.Pool]:
    """Intake's and booking's schemas migrated by their own roles; booking's pool."""
    intake = await create_pool(service_database_url("intake"), "intake")
    booking = await create_pool(service_database_url("booking"), "booking")
    try:
        await migrate(intake, "intake", INTAKE_MIGRATIONS)
        await migrate(booking, "booking", BOOKING_MIGRATIONS)  # btree_gist came from provisioning
        yield booking
    finally:
        await intake.close()
        await booking.close()


async def test_a_service_role_cannot_read_another_services_tables(
    booking_pool: asyncpg.Pool,
) -> None:
    assert await booking_pool.fetchval("SELECT current_user") == "carebridge_booking"
    assert await booking_pool.fetchval("SELECT count(*) FROM appointments") == 0
    for table in ("intake.assessments", "intake.outbox", "intake.inbox"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await booking_pool.fetch(f"SELECT * FROM {table}")


async def test_a_service_role_cannot_create_outside_its_schema(booking_pool: asyncpg.Pool) -> None:
    for statement in (
        "CREATE TABLE intake.smuggled (id int)",
        "CREATE TABLE public.smuggled (id int)",
        "CREATE SCHEMA smuggled",
        "ALTER TABLE intake.assessments ADD COLUMN smuggled int",
        "CREATE ROLE smuggler",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await booking_pool.execute(statement)
    await booking_pool.execute("CREATE TABLE booking_scratch (id int)")  # its own schema: fine
    attributes = await booking_pool.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
        " WHERE rolname = current_user"
    )
    assert attributes is not None and not any(attributes.values())


async def test_a_role_cannot_migrate_a_schema_nobody_provisioned(
    service_database_url: ServiceUrl, tmp_path: Path
) -> None:
    pool = await create_pool(service_database_url("booking"), "referral")
    try:
        with pytest.raises(
            SchemaNotProvisioned, match=r"python -m carebridge_shared\.provisioning"
        ):
            await migrate(pool, "referral", tmp_path)
    finally:
        await pool.close()


async def test_provisioning_adopts_a_schema_the_admin_made_and_runs_again(
    fresh_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (id bigserial PRIMARY KEY);")
    admin = await create_pool(fresh_database_url, "referral")  # how services ran before roles
    try:
        await migrate(admin, "referral", tmp_path)
    finally:
        await admin.close()

    url = await provision_service(fresh_database_url, "referral", "first")
    url = await provision_service(fresh_database_url, "referral", "second")  # idempotent
    assert ":second@" in url and url.startswith("postgresql://carebridge_referral:")

    (tmp_path / "0002_more.sql").write_text("ALTER TABLE notes ADD COLUMN body_ref uuid;")
    role = await create_pool(url, "referral")
    try:
        assert await migrate(role, "referral", tmp_path) == ["service:0002_more"]
        await role.execute("INSERT INTO notes (body_ref) VALUES (gen_random_uuid())")
        owners = await role.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
            " WHERE relnamespace = 'referral'::regnamespace"
        )
        assert [r["owner"] for r in owners] == [service_role("referral")]
    finally:
        await role.close()


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
