from __future__ import annotations

import json

import pytest
import structlog

from carebridge_shared.correlation import correlation_scope, current_correlation_id
from carebridge_shared.logging import REDACTED, configure_logging, get_logger, is_phi_key


@pytest.mark.parametrize(
    "key",
    [
        "name",
        "first_name",
        "lastName",
        "patient_email",
        "phone",
        "address",
        "note",
        "free_text",
        "comment",
        "dob",
        "contact",
    ],
)
def test_phi_like_keys_are_recognised(key: str) -> None:
    assert is_phi_key(key)


@pytest.mark.parametrize(
    "key", ["patient_id", "event_id", "state", "phq9_total", "topic", "status"]
)
def test_ids_and_codes_are_not_phi(key: str) -> None:
    assert not is_phi_key(key)


def test_log_lines_are_json_with_correlation_id_and_no_phi(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("unit", "INFO")
    import uuid

    correlation = uuid.uuid4()
    with correlation_scope(correlation):
        assert current_correlation_id() == correlation
        get_logger("t").info(
            "patient_seen",
            patient_id="p-1",
            email="a@b.c",
            details={"first_name": "Ann", "phq9_total": 12},
            notes=["x"],
        )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["msg"] == "patient_seen"
    assert record["correlation_id"] == str(correlation)
    assert record["service"] == "unit"
    assert record["patient_id"] == "p-1"
    assert record["email"] == REDACTED
    assert record["notes"] == REDACTED
    assert record["details"] == {"first_name": REDACTED, "phq9_total": 12}
    assert "a@b.c" not in line and "Ann" not in line
    structlog.contextvars.clear_contextvars()


def test_standard_library_logs_are_json_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    configure_logging("unit", "INFO")
    logging.getLogger("uvicorn.error").warning("started %s", "server", extra={"email": "x@y.z"})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["msg"] == "started server"
    assert "x@y.z" not in line
    structlog.contextvars.clear_contextvars()
