"""Topic names and their owners. This is the only place topic names are spelled.

Each event class names its topic (`BaseEvent.topic`); the registry is built from the classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Topic(StrEnum):
    ASSESSMENTS = "carebridge.intake.assessments"
    APPOINTMENTS = "carebridge.booking.appointments"
    REFERRALS = "carebridge.referral.referrals"
    CARE_PLANS = "carebridge.care.plans"
    CONSENTS = "carebridge.referral.consents"
    DELIVERIES = "carebridge.notification.deliveries"


# The one service that publishes on each topic: its outbox writes the topic's events, its Kafka
# principal alone may write there (ACLs), and consumers refuse an envelope naming another
# producer. Each service's `PUBLISHES` must be exactly the events of its topics (a test checks).
TOPIC_OWNERS: Mapping[Topic, str] = {
    Topic.ASSESSMENTS: "intake",
    Topic.APPOINTMENTS: "booking",
    Topic.REFERRALS: "referral",
    Topic.CARE_PLANS: "referral",
    Topic.CONSENTS: "referral",
    Topic.DELIVERIES: "notification",
}


class OpsTopic(StrEnum):
    """Topics of the ops tooling: JSON records, not event envelopes; no dead-letter topics."""

    DLQ_REDRIVE_AUDIT = "carebridge.ops.dlq-redrive-audit"  # one record per redriven letter


DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}{DLQ_SUFFIX}"
