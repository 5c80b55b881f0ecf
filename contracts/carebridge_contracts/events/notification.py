"""Notification events (topic: deliveries). They name a template, never the message text."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.common import (
    Channel,
    Code,
    EventTypeName,
    OpaqueId,
    PositiveInt,
    UtcDatetime,
)
from carebridge_contracts.topics import Topic

__all__ = [
    "NotificationFailed",
    "NotificationSent",
]  # the events; the registry finds them by `topic`

RecipientKind = Literal["patient", "clinician"]


class NotificationSent(BaseEvent):
    """A message caused by `cause_event_id` was handed to the channel provider."""

    topic: ClassVar[Topic] = Topic.DELIVERIES
    event_version: ClassVar[int] = 1

    notification_id: UUID
    cause_event_id: UUID
    cause_event_type: EventTypeName
    recipient_kind: RecipientKind
    recipient_id: OpaqueId
    channel: Channel
    template: Code
    sent_at: UtcDatetime


class NotificationFailed(BaseEvent):
    """A message could not be delivered after `attempts` tries."""

    topic: ClassVar[Topic] = Topic.DELIVERIES
    event_version: ClassVar[int] = 1

    notification_id: UUID
    cause_event_id: UUID
    cause_event_type: EventTypeName
    recipient_kind: RecipientKind
    recipient_id: OpaqueId
    channel: Channel
    template: Code
    attempts: PositiveInt
    error_code: Code
    failed_at: UtcDatetime
