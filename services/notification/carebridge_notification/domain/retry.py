"""Retry policy of failed sends: backoff, and which errors are permanent (pure rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff: timedelta
    max_backoff: timedelta

    def backoff(self, attempts: int) -> timedelta:
        """Delay after the `attempts`-th failed attempt: initial, 2x, 4x... capped."""
        delay: timedelta = self.initial_backoff * 2 ** max(attempts - 1, 0)
        return min(delay, self.max_backoff)


@dataclass(frozen=True)
class RetryAt:
    next_attempt_at: datetime


@dataclass(frozen=True)
class GiveUp:
    pass


def is_permanent(error_code: str) -> bool:
    """SMTP 5xx replies are permanent (RFC 5321): retrying cannot help."""
    return error_code.startswith("smtp_5")


def after_failure(
    attempts: int, error_code: str, policy: RetryPolicy, now: datetime
) -> RetryAt | GiveUp:
    """What follows the `attempts`-th failed attempt (counting it)."""
    if is_permanent(error_code) or attempts >= policy.max_attempts:
        return GiveUp()
    return RetryAt(now + policy.backoff(attempts))
