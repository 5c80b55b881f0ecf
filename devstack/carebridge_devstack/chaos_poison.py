"""Poison messages for the chaos run: four kinds of bad record on every consumed topic.

Each poison record's key is a unique tag (``poison-<run>-<n>-<kind>``), so the oracle finds
it on its source topic and on the dead-letter topics, and can tell it from everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from carebridge_contracts import Envelope
from carebridge_contracts.registry import Topic, entries
from carebridge_shared.kafka import make_producer

KINDS: dict[str, str] = {
    # kind -> the ContractError the consumer runtime must name in the dlq-error header
    "malformed_json": "InvalidEnvelope",
    "unknown_type": "UnknownEventType",
    "unknown_version": "UnknownEventType",
    "invalid_payload": "InvalidPayload",
}


@dataclass(frozen=True)
class Poison:
    tag: str
    topic: str
    kind: str

    @property
    def expected_error(self) -> str:
        return KINDS[self.kind]


def poison_set(run_id: str, topics: list[str]) -> list[Poison]:
    """One poison of each kind for each topic."""
    return [
        Poison(f"poison-{run_id}-{i}-{kind.replace('_', '')}", topic, kind)
        for i, topic in enumerate(sorted(topics))
        for kind in KINDS
    ]


def _type_on(topic: str) -> tuple[str, int]:
    for entry in entries():
        if str(entry.topic) == topic:
            return entry.event_type, entry.version
    raise LookupError(f"no event type is registered on {topic}")


def poison_value(poison: Poison) -> bytes:
    """The bytes of a poison record; only malformed_json fails before the envelope parses."""
    if poison.kind == "malformed_json":
        return f'{{"event_id": "{poison.tag}", "type": '.encode()
    event_type, version = _type_on(poison.topic)
    data: dict[str, object] = {"patient_id": poison.tag}
    if poison.kind == "unknown_type":
        event_type = "ChaosUnknownEvent"
    elif poison.kind == "unknown_version":
        version = 999
    else:  # invalid_payload: the right type and version, required fields missing
        data["chaos"] = "missing every required field"
    envelope = Envelope(
        event_id=uuid.uuid4(),
        type=event_type,
        version=version,
        occurred_at=datetime.now(UTC),
        producer="chaos",
        correlation_id=uuid.uuid4(),
        subject=poison.tag,
        sequence=1,
        data=data,
    )
    return envelope.to_bytes()


async def inject(bootstrap: str, poison: Poison, *, deadline_s: float = 120.0) -> int:
    """Publish one poison record, retrying through broker outages; returns attempts used.

    A retry after an unacknowledged send may leave two copies; the oracle counts the copies
    it finds on the source topic, so that is not miscounted."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        producer = make_producer(bootstrap, client_id="carebridge-chaos-poison")
        try:
            await producer.start()
            await producer.send_and_wait(
                poison.topic,
                value=poison_value(poison),
                key=poison.tag.encode(),
                headers=[("chaos-poison", poison.kind.encode())],
            )
            return attempts
        except Exception:
            if loop.time() > give_up:
                raise
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):  # a half-started producer may not stop cleanly
                await producer.stop()


def consumed_topics(groups: dict[str, list[str]]) -> list[str]:
    """Every topic some consumer group subscribes to (group -> topics)."""
    known = {str(t) for t in Topic}
    return sorted({t for topics in groups.values() for t in topics if t in known})


def describe(poison: Poison) -> str:
    return json.dumps({"tag": poison.tag, "topic": poison.topic, "kind": poison.kind})
