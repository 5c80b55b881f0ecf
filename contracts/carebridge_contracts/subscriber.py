"""Helpers for downstream subscribers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
