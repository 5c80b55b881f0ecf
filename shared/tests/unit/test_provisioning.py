"""Provisioning helpers that need no database (the rest: tests/security/test_database_roles.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from carebridge_contracts.services import SERVICES
from carebridge_ops.settings_doc import service_settings_class
from carebridge_shared.provisioning import (
    main,
    owner_role,
    password_env,
    service_role,
    service_url,
)
from carebridge_shared.service import service_main


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


@pytest.mark.parametrize("service", SERVICES)
def test_the_default_database_url_is_the_services_own_login_role(service: str) -> None:
    """Not a superuser (ADR 0014): the service's login role on the local dev stack."""
    settings_class = service_settings_class(service)
    default = urlsplit(settings_class.model_fields["database_url"].default)
    assert default.username == service_role(service) == f"carebridge_{service}"
    assert (default.hostname, default.port, default.path) == ("127.0.0.1", 25432, "/carebridge")
    assert owner_role(service) == f"carebridge_{service}_owner"


def test_the_deploy_command_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_ADMIN_URL", raising=False)
    monkeypatch.delenv("CAREBRIDGE_BOOKING_DB_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exited:
        service_main("booking", Path("unused"), lambda: None, ["migrate"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "python -m carebridge_booking migrate" in err
    assert "missing: DATABASE_ADMIN_URL" in err and "missing: CAREBRIDGE_BOOKING_DB_PASSWORD" in err
    with pytest.raises(SystemExit) as exited:
        service_main("booking", Path("unused"), lambda: None, ["migrat"])
    assert exited.value.code == 2 and "[serve | migrate]" in capsys.readouterr().err
    started: list[bool] = []
    service_main("booking", Path("unused"), lambda: started.append(True), [])
    assert started == [True], "no argument runs the service"
