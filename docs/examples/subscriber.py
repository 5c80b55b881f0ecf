"""An internal system subscribing to carebridge events: the pattern docs/subscribing.md explains.

    set -a; source .stack/stack.env; set +a        # the local stack's address and login
    .venv/bin/python docs/examples/subscriber.py --group billing-demo
    .venv/bin/python docs/examples/subscriber.py --group billing-demo \\
        --topic carebridge.booking.appointments --start latest --max-events 20

It prints one line per message and stops on Ctrl-C (or SIGTERM, or after --max-events),
committing what it handled. What a real subscriber does differently is marked REAL SYSTEM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections import OrderedDict
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from carebridge_contracts import GapDetector, ParseStatus, all_topics, try_parse
from carebridge_shared.kafka import security_options


class Subscriber:
    """Turns each message into one line; remembers event ids and per-patient sequences."""

    def __init__(self, *, start: Literal["earliest", "latest"], remember: int = 100_000) -> None:
        # From the beginning every patient's stream starts at 1; joining at "latest", the first
        # sequence seen per patient is the baseline. REAL SYSTEM: store the last sequence per
        # (topic, patient) with your effect and `seed()` the detector on start, or a restart
        # reports everything before its first message as a gap.
        self.gaps = GapDetector(expect_first=1 if start == "earliest" else None)
        # REAL SYSTEM: record handled event ids in your database, in the transaction of your
        # effect (an inbox table), not in memory.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def handle(self, record: ConsumerRecord[bytes, bytes]) -> str:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        result = try_parse(record.value)
        envelope = result.envelope
        if envelope is None:  # not even an envelope: nothing to dedupe or sequence
            return f"{where} INVALID {result.reason}: skipped"
        event_id = str(envelope.event_id)
        what = (
            f"{where} {envelope.type} v{envelope.version} patient={envelope.subject} "
            f"seq={envelope.sequence} event_id={event_id}"
        )
        if event_id in self._seen:
            return f"{what} DUPLICATE event_id already handled (a redelivered copy): skipped"
        # The sequence is on the envelope, so even a message this subscriber cannot read keeps
        # the gap detection right.
        seen = self.gaps.observe(record.topic, envelope.subject, envelope.sequence)
        warning = ""
        if seen.is_duplicate:
            warning = f" DUPLICATE sequence (last seen {seen.last_seen}): skipped"
        elif seen.is_gap:
            warning = f" GAP: missing sequence {_span(seen.missing)}"
        if result.status is ParseStatus.UNKNOWN_NEWER_VERSION:
            known = ", ".join(f"v{v}" for v in result.known_versions)
            outcome = f" UNKNOWN NEWER VERSION (this subscriber knows {known}): skipped"
        elif result.status is ParseStatus.UNKNOWN_TYPE:
            outcome = " UNKNOWN TYPE: skipped"
        elif result.status is ParseStatus.INVALID:
            outcome = f" INVALID {result.reason}: skipped"
        elif seen.is_duplicate:
            outcome = ""
        else:
            outcome = " ok"  # REAL SYSTEM: apply `result.event` here (match on its type)
            if result.ignored_fields:  # a producer added optional fields this package lacks
                outcome += f" (ignored new fields: {', '.join(result.ignored_fields)})"
        self._remember_id(event_id)
        return what + warning + outcome

    def _remember_id(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)


def _span(missing: range) -> str:
    last = missing.stop - 1
    return str(missing.start) if missing.start == last else f"{missing.start}-{last}"


async def run(
    bootstrap: str,
    group: str,
    topics: list[str],
    *,
    start: Literal["earliest", "latest"],
    max_events: int | None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,  # your own group: your offsets, your pace, nobody else's
        enable_auto_commit=False,  # commit only what was handled: at-least-once
        auto_offset_reset=start,  # where a group with no committed offset begins
        isolation_level="read_committed",  # never see the copies of an aborted redrive
        # the login the environment names (CAREBRIDGE_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_*);
        # REAL SYSTEM: a principal of your own, with READ on the topics and on your group
        **security_options(),
    )
    subscriber = Subscriber(start=start)
    handled = 0
    await consumer.start()
    try:
        while not stop.is_set() and (max_events is None or handled < max_events):
            batches = await consumer.getmany(timeout_ms=500, max_records=100)
            done: dict[TopicPartition, int] = {}
            for partition, records in batches.items():
                for record in records:
                    if max_events is not None and handled >= max_events:
                        break
                    print(subscriber.handle(record), flush=True)
                    handled += 1
                    done[partition] = record.offset + 1
            if done:
                await consumer.commit(done)  # after handling: a crash redelivers, never skips
    finally:
        await consumer.stop()
    print(f"stopped after {handled} messages; offsets committed", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--group", required=True, help="your consumer group, e.g. billing")
    parser.add_argument(
        "--topic",
        action="append",
        dest="topics",
        help="a topic to read (repeatable; default: every event topic in the registry)",
    )
    parser.add_argument("--start", choices=("earliest", "latest"), default="earliest")
    parser.add_argument("--max-events", type=int, default=None, help="stop after N messages")
    args = parser.parse_args(argv)
    if not args.bootstrap:
        parser.error("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap host:port")
    topics = args.topics or [str(topic) for topic in all_topics()]
    return asyncio.run(
        run(args.bootstrap, args.group, topics, start=args.start, max_events=args.max_events)
    )


if __name__ == "__main__":
    raise SystemExit(main())
