from __future__ import annotations

import json

import pytest
import structlog

from carebridge_shared.correlation import correlation_scope, current_correlation_id
from carebridge_shared.logging import (
    REDACTED,
    configure_logging,
    get_logger,
    is_phi_key,
    redact_text,
)


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


# --- tracebacks ------------------------------------------------------------------------------

EMAIL, NAME, PHONE, US_PHONE, SURNAME = (
    "ann.smith@example.org",
    "Ann Smith",
    "+1 (555) 010-4477",
    "555-010-4477",
    "Smith",
)
CANARIES = (EMAIL, NAME, PHONE, US_PHONE, SURNAME)
# Built apart from the frames that raise: a traceback quotes their source lines.
CONTACT = {"email": EMAIL, "full_name": NAME, "patient_id": "p-7"}
MESSAGE = (
    f"could not send: name='{NAME}' phone={PHONE} fallback {US_PHONE} to {EMAIL}; "
    f"DETAIL: Key (patient_id, email)=(p-7, {SURNAME}) exists"
)


def _raise_with_phi() -> None:
    try:
        raise LookupError(f"no contact row for {CONTACT}")
    except LookupError as exc:
        raise ValueError(MESSAGE) from exc


def _last_json_line(capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, object]]:
    line = capsys.readouterr().out.strip().splitlines()[-1]
    return line, json.loads(line)


def test_a_logged_traceback_is_redacted_like_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "INFO")
    try:
        _raise_with_phi()
    except ValueError:
        get_logger("t").exception("delivery_failed", patient_id="p-7")
    line, record = _last_json_line(capsys)
    exception = str(record["exception"])
    assert "ValueError: could not send" in exception and "LookupError" in exception, exception
    assert "_raise_with_phi" in exception, "frames are kept"
    assert record["patient_id"] == "p-7" and "p-7" in exception, "ids are kept"
    for canary in CANARIES:
        assert canary not in line, (canary, exception)
    assert exception.count(REDACTED) >= 6, exception
    structlog.contextvars.clear_contextvars()


def test_a_standard_library_traceback_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    configure_logging("unit", "INFO")
    try:
        _raise_with_phi()
    except ValueError as exc:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application: %r", exc,
                                                 exc_info=True)  # fmt: skip
    line, record = _last_json_line(capsys)
    assert "ValueError" in str(record["exception"])
    assert str(record["msg"]).startswith("Exception in ASGI application")
    for canary in CANARIES:
        assert canary not in line, (canary, line)
    structlog.contextvars.clear_contextvars()


def test_a_validation_error_does_not_repeat_its_input(capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import BaseModel, ValidationError

    class Contact(BaseModel):
        channel: int

    configure_logging("unit", "INFO")
    try:
        Contact.model_validate({"channel": NAME})
    except ValidationError:
        get_logger("t").exception("bad_contact")
    line, record = _last_json_line(capsys)
    assert "ValidationError" in str(record["exception"]) and NAME not in line
    structlog.contextvars.clear_contextvars()


@pytest.mark.parametrize(
    "text",
    [
        "connect to 127.0.0.1:25432 failed at 2026-12-02 05:01:00+00:00",
        "event 3f0e1c2a-9b1d-4c3e-8f00-123456789012 on carebridge.booking.appointments:2@41",
        'File "/app/carebridge_shared/consumer.py", line 212, in process',
        'duplicate key value violates unique constraint "inbox_pkey"',
    ],
)
def test_redaction_leaves_ids_times_and_frames_alone(text: str) -> None:
    assert redact_text(text) == text
