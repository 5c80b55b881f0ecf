"""carebridge event contracts: envelope, topic registry, event models, subscriber helpers."""

from carebridge_contracts.envelope import (
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_TYPE,
    HEADER_VERSION,
    Envelope,
    kafka_headers,
    kafka_key,
    type_from_headers,
)
from carebridge_contracts.errors import (
    ContractError,
    IncompatibleSchemaChange,
    InvalidEnvelope,
    InvalidPayload,
    ProducerNotTopicOwner,
    SubjectMismatch,
    UnknownEventType,
)
from carebridge_contracts.events import booking, care, intake, notification, outcomes, referral
from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.events.booking import *  # noqa: F403
from carebridge_contracts.events.care import *  # noqa: F403
from carebridge_contracts.events.intake import *  # noqa: F403
from carebridge_contracts.events.notification import *  # noqa: F403
from carebridge_contracts.events.outcomes import *  # noqa: F403
from carebridge_contracts.events.referral import *  # noqa: F403
from carebridge_contracts.registry import (
    OpsTopic,
    RegistryEntry,
    Topic,
    all_topics,
    all_topics_with_dlq,
    check_producer,
    dlq_topic,
    entries,
    model_for,
    parse,
    topic_for,
    topic_owner,
)
from carebridge_contracts.subscriber import (
    GapDetector,
    ParseResult,
    ParseStatus,
    SequenceCheck,
    SequenceVerdict,
    try_parse,
)

__all__ = [
    "HEADER_CORRELATION_ID",
    "HEADER_EVENT_ID",
    "HEADER_TYPE",
    "HEADER_VERSION",
    "BaseEvent",
    "ContractError",
    "Envelope",
    "GapDetector",
    "IncompatibleSchemaChange",
    "InvalidEnvelope",
    "InvalidPayload",
    "OpsTopic",
    "ParseResult",
    "ParseStatus",
    "ProducerNotTopicOwner",
    "RegistryEntry",
    "SequenceCheck",
    "SequenceVerdict",
    "SubjectMismatch",
    "Topic",
    "UnknownEventType",
    "all_topics",
    "all_topics_with_dlq",
    "check_producer",
    "dlq_topic",
    "entries",
    "kafka_headers",
    "kafka_key",
    "model_for",
    "parse",
    "topic_for",
    "topic_owner",
    "try_parse",
    "type_from_headers",
]
__all__ += booking.__all__
__all__ += care.__all__
__all__ += intake.__all__
__all__ += notification.__all__
__all__ += outcomes.__all__
__all__ += referral.__all__
