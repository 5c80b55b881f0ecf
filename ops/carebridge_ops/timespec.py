"""Points in time on the command line: ISO-8601 (`2026-11-27T09:00:00Z`; without an offset it
is UTC) or relative to now (`-15m`, `-2h`, `-7d`, `-30s`, `now`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^-(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An aware UTC datetime; ValueError says which forms are accepted."""
    value = text.strip()
    now = now or datetime.now(UTC)
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO-8601 (2026-11-27T09:00:00Z, UTC when no offset "
            "is given) or a time before now (-30s, -15m, -2h, -7d, -1w, now)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_millis(moment: datetime) -> int:
    """Kafka timestamps: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)
