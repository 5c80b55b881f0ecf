"""structlog JSON logging with correlation ids and PHI redaction.

Fields are redacted by key (`redact_phi`). Tracebacks (`exc_info`, `log.exception`, and the
standard library's records) are formatted first and then go through `redact_text`: a value
written after a PHI-like key (`email=...`, `'first_name': '...'`, PostgreSQL's
`Key (email)=(...)`), every e-mail address and phone number, and pydantic's `input_value=...`
become `[redacted]`, so an exception message cannot carry a contact detail or a name field to a
log line. Free prose in a message (a name with no key before it) is not recognised: exceptions
raised by carebridge code name ids and codes only.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

# Keys whose values may identify a patient or carry clinical free text.
_PHI_KEY = re.compile(
    r"(^|_)(name|first_?name|last_?name|full_?name|email|e_?mail|phone|mobile|address|street"
    r"|zip|postcode|dob|birth|ssn|contact|note|notes|text|comment|comments|free_?text"
    r"|message_body|body)($|_)",
    re.IGNORECASE,
)


def is_phi_key(key: str) -> bool:
    return bool(_PHI_KEY.search(key))


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: REDACTED if is_phi_key(str(k)) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


# A key and what separates it from its value: key=, key:, 'key':, "key": (reprs of dicts and
# keyword arguments, "field: value" messages).
_KEY = re.compile(r"""['"]?(?P<name>[A-Za-z_][A-Za-z0-9_]*)['"]?[ \t]*[=:][ \t]*""")
_VALUE = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\([^)]*\)|\[[^\]]*\]|\{[^}]*\}|[^\s,;)}\]]+"""
)
# PostgreSQL's detail line: Key (email)=(ann@example.org) already exists.
_KEY_DETAIL = re.compile(r"(?P<key>\((?P<names>[^)]*)\)=)\([^)]*\)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(
    r"(?<![\w-])(?:\+\d[\d ().-]{7,}\d|\(\d{3}\)\s*\d{3}[-. ]\d{4}|\d{3}[-.]\d{3}[-.]\d{4})(?![\w-])"
)
# pydantic's ValidationError repeats the rejected input whatever the field is called.
_ALWAYS_REDACTED_KEYS = frozenset({"input_value"})


def _names_phi(names: str) -> bool:
    return any(is_phi_key(name.strip(" \"'")) for name in names.split(","))


def redact_text(text: str) -> str:
    """`text` (a formatted traceback) with e-mail addresses, phone numbers and the values of
    PHI-like keys replaced by REDACTED."""
    text = _EMAIL.sub(REDACTED, text)
    text = _PHONE.sub(REDACTED, text)
    text = _KEY_DETAIL.sub(lambda m: m["key"] + REDACTED if _names_phi(m["names"]) else m[0], text)
    pieces: list[str] = []
    done = 0
    for key in _KEY.finditer(text):
        if key.start() < done:
            continue  # inside a value already redacted
        if key["name"] in _ALWAYS_REDACTED_KEYS or _names_phi(key["name"]):
            value = _VALUE.match(text, key.end())
            if value is not None:
                pieces += [text[done : key.end()], REDACTED]
                done = value.end()
    return "".join(pieces) + text[done:]


def redact_exception(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor, after format_exc_info: the same PHI redaction for a traceback, and
    for the message that came with it (the standard library's often quotes the exception)."""
    if isinstance(event_dict.get("exception"), str):
        for key in ("exception", "event"):
            if isinstance(event_dict.get(key), str):
                event_dict[key] = redact_text(event_dict[key])
    return event_dict


def redact_phi(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank every PHI-like key, at any depth."""
    for key in list(event_dict):
        if key == "event":
            continue
        event_dict[key] = REDACTED if is_phi_key(key) else _redact(event_dict[key])
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout for structlog and the standard library (uvicorn, aiokafka...)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_phi,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_exception,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # No file given: each line goes to the sys.stdout of the moment. A stream fixed here
        # would outlive a test's captured stdout and fail every later log call in the session.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_exception,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
