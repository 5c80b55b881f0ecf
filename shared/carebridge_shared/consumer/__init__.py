"""Consumer runtime on FastStream: effect and inbox in one transaction, then the offset.

- `subscriptions`: what a service subscribes to (`Subscriptions`) and what a handler call
  gets (`EventContext`);
- `records`: reading a record (its envelope, believed only from the topic's owner);
- `delivery`: records applied together, and the shape of the wrappers around handling them;
- `apply`: inbox claims and handler dispatch, in one transaction (the one apply path);
- `middleware`: tracing, correlation ids, metrics, logging, the effect hook: one wrapper each;
- `retries`: a record on its own is retried with backoff, then dead-lettered;
- `dead_letters`: `<topic>.dlq` and its headers;
- `offsets`: assignment tracking and background offset commits;
- `runtime`: `ConsumerRuntime`, which puts them together.
"""

from carebridge_shared.consumer.dead_letters import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER_GROUP,
    DLQ_ERROR,
    DLQ_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DeadLetterPublisher,
    DeadLetters,
    dlq_headers,
)
from carebridge_shared.consumer.delivery import APPLIED, DEAD_LETTERED, DUPLICATE, IGNORED
from carebridge_shared.consumer.middleware import EffectHook
from carebridge_shared.consumer.records import Record, parse_from
from carebridge_shared.consumer.retries import TRANSIENT_ERRORS, RetryPolicy
from carebridge_shared.consumer.runtime import (
    IDLE_POLL_MS,
    MAX_POLL_RECORDS,
    MAX_RECORDS_PER_TRANSACTION,
    ConsumerRuntime,
)
from carebridge_shared.consumer.subscriptions import (
    BatchHandler,
    EventContext,
    Handler,
    Subscriptions,
)

__all__ = [
    "APPLIED",
    "DEAD_LETTERED",
    "DLQ_ATTEMPTS",
    "DLQ_CONSUMER_GROUP",
    "DLQ_ERROR",
    "DLQ_HEADERS",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TOPIC",
    "DUPLICATE",
    "IDLE_POLL_MS",
    "IGNORED",
    "MAX_POLL_RECORDS",
    "MAX_RECORDS_PER_TRANSACTION",
    "TRANSIENT_ERRORS",
    "BatchHandler",
    "ConsumerRuntime",
    "DeadLetterPublisher",
    "DeadLetters",
    "EffectHook",
    "EventContext",
    "Handler",
    "Record",
    "RetryPolicy",
    "Subscriptions",
    "dlq_headers",
    "parse_from",
]
