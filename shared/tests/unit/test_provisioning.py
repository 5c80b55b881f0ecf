"""Provisioning helpers that need no database (the rest: tests/security/test_database_roles.py)."""

from __future__ import annotations

import pytest

from carebridge_shared.provisioning import main, password_env, service_role, service_url


def test_the_service_url_is_the_admin_url_with_the_services_role() -> None:
    admin = "postgresql://postgres:admin-secret@db.example:5432/carebridge?sslmode=require"
    assert service_url(admin, "booking", "p@ss word") == (
        "postgresql://carebridge_booking:p%40ss%20word@db.example:5432/carebridge?sslmode=require"
    )
    assert service_role("notification") == "carebridge_notification"
    assert password_env("booking") == "CAREBRIDGE_BOOKING_DB_PASSWORD"
    with pytest.raises(ValueError, match="schema name"):
        service_role("Booking; DROP")


def test_the_command_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_ADMIN_URL", raising=False)
    monkeypatch.delenv("CAREBRIDGE_BOOKING_DB_PASSWORD", raising=False)
    assert main(["booking"]) == 2
    err = capsys.readouterr().err
    assert "missing: CAREBRIDGE_BOOKING_DB_PASSWORD" in err and "missing: DATABASE_ADMIN_URL" in err
