"""Contact details are stored by notification only, and no service stores a name or a date of
birth: every service's migrations are applied to a real PostgreSQL database and the columns it
ends up with are checked (a column added by ALTER TABLE or renamed later is seen as well)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from carebridge_contracts.phi import BIRTH_WORDS, CONTACT_WORDS, IDENTITY_WORDS, field_words
from carebridge_contracts.services import SERVICES

pytestmark = pytest.mark.integration

# The one service that may hold contact details: it is the one that sends messages.
CONTACT_STORE = "notification"


def phi_columns(columns: list[tuple[str, str, str]]) -> list[str]:
    """`schema.table.column` of each column whose name says it holds PHI it must not hold
    there: a contact detail outside notification, a name or a date of birth anywhere."""
    found = []
    for schema, table, column in columns:
        words = set(field_words(column))
        identity = words & (IDENTITY_WORDS | BIRTH_WORDS)
        contact = words & CONTACT_WORDS if schema != CONTACT_STORE else set()
        if identity or contact:
            found.append(f"{schema}.{table}.{column} ({', '.join(sorted(identity | contact))})")
    return found


def test_rule_flags_contact_columns_outside_notification_and_names_anywhere() -> None:
    columns = [
        ("booking", "clinicians", "email"),
        ("referral", "referrals", "patient_phone"),
        ("notification", "contacts", "email"),
        ("notification", "contacts", "full_name"),
        ("intake", "assessments", "date_of_birth"),
        ("intake", "assessments", "phq9_total"),
    ]
    assert phi_columns(columns) == [
        "booking.clinicians.email (email)",
        "referral.referrals.patient_phone (phone)",
        "notification.contacts.full_name (name)",
        "intake.assessments.date_of_birth (birth)",
    ]


async def test_only_notification_stores_contact_details_and_nobody_stores_names(
    fresh_database_url: str, service_database_url: Callable[[str], str]
) -> None:
    for service in SERVICES:
        service_database_url(service)  # the deploy step: the service's migrations, as its owner
    conn = await asyncpg.connect(fresh_database_url)
    try:
        rows = await conn.fetch(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = ANY($1::text[]) ORDER BY 1, 2, 3",
            list(SERVICES),
        )
    finally:
        await conn.close()
    columns = [(r["table_schema"], r["table_name"], r["column_name"]) for r in rows]
    assert {schema for schema, _, _ in columns} == set(SERVICES), "every service was migrated"
    stored = {(t, c) for s, t, c in columns if s == CONTACT_STORE}
    assert {("contacts", "email"), ("contacts", "phone")} <= stored, "the contact store is seen"
    found = phi_columns(columns)
    assert not found, (
        "PHI columns where they do not belong (contact details live in notification only, "
        "names and dates of birth nowhere):\n" + "\n".join(found)
    )
