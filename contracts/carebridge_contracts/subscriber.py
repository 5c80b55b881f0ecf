"""Helpers for downstream subscribers: a parse that never raises, and gap detection."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from carebridge_contracts.envelope import Envelope
from carebridge_contracts.errors import ContractError, InvalidPayload, UnknownEventType
from carebridge_contracts.events.base import BaseEvent
from carebridge_contracts.registry import entries, parse

Message = Envelope | bytes | bytearray | memoryview | str | None


class ParseStatus(StrEnum):
    PARSED = "parsed"
    UNKNOWN_NEWER_VERSION = "unknown_newer_version"  # upgrade carebridge-contracts to read it
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What `try_parse` made of one message.

    `envelope` is set whenever the envelope itself is valid (every status but most INVALIDs),
    so a subscriber can still log `event_id`, `type`, `version` and `sequence`; `event` is
    set only when PARSED. `reason` says why it is not PARSED; it never quotes input values.
    `ignored_fields` names payload fields this package's model does not know (a producer
    added optional fields in the same version): they were left out of `event` and of
    `envelope.data`, so strict `parse` would have refused the message.
    """

    status: ParseStatus
    envelope: Envelope | None = None
    event: BaseEvent | None = None
    reason: str | None = None
    known_versions: tuple[int, ...] = ()  # registered versions of the envelope's type
    ignored_fields: tuple[str, ...] = ()

    @property
    def is_strictly_parsed(self) -> bool:
        """PARSED with nothing ignored: what `parse` (and carebridge's own consumers) accept."""
        return self.is_parsed and not self.ignored_fields

    @property
    def is_parsed(self) -> bool:
        return self.status is ParseStatus.PARSED

    @property
    def is_unknown_newer_version(self) -> bool:
        return self.status is ParseStatus.UNKNOWN_NEWER_VERSION

    @property
    def is_unknown_type(self) -> bool:
        return self.status is ParseStatus.UNKNOWN_TYPE

    @property
    def is_invalid(self) -> bool:
        return self.status is ParseStatus.INVALID


def try_parse(message: Message) -> ParseResult:
    """Parse an envelope and its typed event like `parse`, but report instead of raising.

    A version newer than every registered version of a known type is UNKNOWN_NEWER_VERSION
    (a producer upgraded before this subscriber did): skip it or park it, do not crash. Payload
    fields the model does not know are dropped and named in `ignored_fields` (a tolerant
    reader: adding an optional field is a compatible change, ADR 0002).
    """
    if message is None or (not isinstance(message, Envelope) and len(message) == 0):
        return ParseResult(ParseStatus.INVALID, reason="empty message")
    try:
        envelope = message if isinstance(message, Envelope) else Envelope.from_bytes(message)
    except (ContractError, ValueError, TypeError, RecursionError) as exc:
        return ParseResult(ParseStatus.INVALID, reason=_reason(exc))
    ignored: tuple[str, ...] = ()
    try:
        try:
            _, event = parse(envelope)
        except InvalidPayload as exc:
            ignored = _unknown_fields(exc)
            if not ignored:
                raise
            known_only = {k: v for k, v in envelope.data.items() if k not in ignored}
            envelope = envelope.model_copy(update={"data": known_only})
            _, event = parse(envelope)
    except UnknownEventType as exc:
        known = exc.known_versions
        if not known:
            status = ParseStatus.UNKNOWN_TYPE
        elif envelope.version > max(known):
            status = ParseStatus.UNKNOWN_NEWER_VERSION
        else:  # an unregistered older or in-between version: no producer may send it
            status = ParseStatus.INVALID
        return ParseResult(status, envelope, reason=exc.reason, known_versions=known)
    except (ContractError, ValueError, TypeError, RecursionError) as exc:
        return ParseResult(ParseStatus.INVALID, envelope, reason=_reason(exc))
    return ParseResult(
        ParseStatus.PARSED,
        envelope,
        event,
        known_versions=_known(envelope.type),
        ignored_fields=ignored,
    )


def _unknown_fields(exc: InvalidPayload) -> tuple[str, ...]:
    """The top-level payload fields the model does not know, when that is all that is wrong."""
    cause = exc.__cause__
    if not isinstance(cause, ValidationError):
        return ()
    errors = cause.errors(include_url=False, include_input=False, include_context=False)
    if not all(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in errors):
        return ()
    return tuple(sorted(str(e["loc"][0]) for e in errors))


def _known(event_type: str) -> tuple[int, ...]:
    return tuple(e.version for e in entries() if e.event_type == event_type)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ContractError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}"  # the message of a non-contract error may quote the input


class SequenceVerdict(StrEnum):
    NEXT = "next"
    DUPLICATE = "duplicate"  # or older than the last one seen
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class SequenceCheck:
    verdict: SequenceVerdict
    sequence: int
    last_seen: int | None
    missing: range  # sequences skipped over; empty unless verdict is GAP

    @property
    def is_next(self) -> bool:
        return self.verdict is SequenceVerdict.NEXT

    @property
    def is_duplicate(self) -> bool:
        return self.verdict is SequenceVerdict.DUPLICATE

    @property
    def is_gap(self) -> bool:
        return self.verdict is SequenceVerdict.GAP


class GapDetector:
    """Tracks the last `Envelope.sequence` seen per (topic, subject).

    `expect_first` is the sequence expected for a subject never seen before: 1 when
    consuming a topic from its beginning, or None to accept whatever comes first as
    the baseline (a subscriber that started from the latest offset).
    State is in memory; seed it from your own store with `seed()` after a restart.
    """

    def __init__(self, *, expect_first: int | None = 1) -> None:
        if expect_first is not None and expect_first < 1:
            raise ValueError("expect_first must be >= 1")
        self._expect_first = expect_first
        self._last: dict[tuple[str, str], int] = {}

    def check(self, topic: str, subject: str, sequence: int) -> SequenceCheck:
        """Classify `sequence` without recording it."""
        if sequence < 1:
            raise ValueError(f"sequence must be >= 1, got {sequence}")
        last = self._last.get((topic, subject))
        if last is None:
            if self._expect_first is None:
                return SequenceCheck(SequenceVerdict.NEXT, sequence, None, range(0))
            expected = self._expect_first
        else:
            expected = last + 1
        if sequence < expected:
            return SequenceCheck(SequenceVerdict.DUPLICATE, sequence, last, range(0))
        if sequence == expected:
            return SequenceCheck(SequenceVerdict.NEXT, sequence, last, range(0))
        return SequenceCheck(SequenceVerdict.GAP, sequence, last, range(expected, sequence))

    def record(self, topic: str, subject: str, sequence: int) -> None:
        """Mark `sequence` as seen; the high-water mark never moves back."""
        key = (topic, subject)
        self._last[key] = max(sequence, self._last.get(key, 0))

    def observe(self, topic: str, subject: str, sequence: int) -> SequenceCheck:
        """`check`, then `record` unless it is a duplicate."""
        result = self.check(topic, subject, sequence)
        if not result.is_duplicate:
            self.record(topic, subject, sequence)
        return result

    def last_seen(self, topic: str, subject: str) -> int | None:
        return self._last.get((topic, subject))

    def seed(self, topic: str, subject: str, last_seen: int) -> None:
        """Restore the last sequence processed (e.g. from your database)."""
        if last_seen < 0:
            raise ValueError("last_seen must be >= 0")
        self._last[(topic, subject)] = last_seen
