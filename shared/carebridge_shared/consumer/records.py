"""Reading records: the envelope and event of one, and FastStream's parsing made lenient."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from aiokafka.structs import ConsumerRecord

from carebridge_contracts import BaseEvent, Envelope, check_producer, parse

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def parse_from(record: Record) -> tuple[Envelope, BaseEvent]:
    """The record's envelope and event, believed only when the envelope's producer owns the
    topic it was read from: any client able to write to a topic cannot also claim to be its
    owner. Raises a `ContractError` (`ProducerNotTopicOwner` for that case)."""
    envelope, event = parse(record.value or b"")
    check_producer(envelope, record.topic)
    return envelope, event


async def lenient_header_parser(
    records: Record | tuple[Record, ...],
    original: Callable[[Any], Awaitable[Any]],
) -> Any:
    """FastStream's parser decodes every header value as UTF-8 and fails on a null or binary
    one, before any handler runs: the record would be retried forever and block its partition.
    It gets copies with such values replaced; the handler still sees the records as received."""
    batch = records if isinstance(records, tuple) else (records,)
    readable = tuple(
        record
        if all(_is_text(v) for _, v in record.headers or ())
        else dataclasses.replace(
            record, headers=[(k, _readable(v)) for k, v in record.headers or ()]
        )
        for record in batch
    )  # a copy only of a record that needs one (issue 16: not of every record)
    message = await original(readable if isinstance(records, tuple) else readable[0])
    message.raw_message = records
    return message


async def undecoded(message: Any) -> Any:
    """The handler reads the records themselves: FastStream's own decoding of the batch would
    parse every record's headers again, as strictly as its parser does."""
    return message.body


def _is_text(value: bytes | None) -> bool:
    if value is None:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _readable(value: bytes | None) -> bytes:
    if value is None:
        return b""
    try:
        value.decode()
    except UnicodeDecodeError:
        return value.decode(errors="replace").encode()
    return value
