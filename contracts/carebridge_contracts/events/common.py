"""Field types shared by the event models.

String fields are always constrained (pattern, enum or format) so a payload has
no place to carry names, contact details or free text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, Strict, StringConstraints

US_STATE_CODES: frozenset[str] = frozenset(
    (  # noqa: SIM905 - a word list reads better than 56 quoted strings
        "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
        "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR GU VI AS MP"
    ).split()
)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00; a ValueError makes it a validation error
        raise ValueError("datetime is out of range once converted to UTC") from None


def _known_state(value: str) -> str:
    if value not in US_STATE_CODES:
        raise ValueError(f"not a US state or territory code: {value!r}")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC. Naive datetimes are rejected."""

OpaqueId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
"""An opaque identifier: no spaces or '@', so it cannot hold a name or an e-mail address."""

PatientId = OpaqueId
ClinicianId = OpaqueId

Code = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"),
]
"""A short machine code (template name, error code, producer name), never prose."""

EventTypeName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Z][A-Za-z0-9]*$")
]

StateCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_known_state)]
"""Two-letter USPS code of a US state, DC or territory."""

PositiveInt = Annotated[int, Strict(), Field(ge=1)]

ClinicianRole = Literal["psychiatrist", "therapist"]
VisitType = Literal[
    "initial_psychiatric_evaluation",
    "psychiatric_follow_up",
    "therapy_intake",
    "therapy_session",
]
Channel = Literal["email", "sms"]
Modality = Literal["CBT", "DBT", "EMDR", "IPT", "ACT", "psychodynamic"]
Urgency = Literal["routine", "urgent"]


def check_interval(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
