"""On which channel a delivery is recorded, and how a due one goes out (pure rules)."""

from __future__ import annotations

from dataclasses import dataclass

from carebridge_contracts.events.common import Channel

# Error codes of undeliverable deliveries (codes, never prose).
NO_CONTACT = "no_contact"
CHANNEL_UNSUPPORTED = "channel_unsupported"


@dataclass(frozen=True)
class ContactInfo:
    email: str | None
    phone: str | None
    preferred_channel: Channel


def planned_channel(contact: ContactInfo | None) -> Channel:
    """The channel a new delivery is recorded under.

    Only e-mail is delivered for real: an SMS-preferring recipient with an e-mail address is
    written to by e-mail; without one the delivery stays "sms" and fails as unsupported.
    """
    if contact is not None and contact.preferred_channel == "sms" and contact.email is None:
        return "sms"
    return "email"


@dataclass(frozen=True)
class EmailRoute:
    address: str


@dataclass(frozen=True)
class Undeliverable:
    error_code: str


def route(contact: ContactInfo | None) -> EmailRoute | Undeliverable:
    """How a due delivery goes out, decided with the contact as it is at send time."""
    if contact is None or (contact.email is None and contact.phone is None):
        return Undeliverable(NO_CONTACT)
    if contact.email is None:
        return Undeliverable(CHANNEL_UNSUPPORTED)
    return EmailRoute(contact.email)
