"""What one benchmark run measures, and the quick and full presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Booking request to confirmation email: the targets of the issue (milliseconds).
EMAIL_P99_TARGET_MS = 150.0
EMAIL_P99_TARGET_RATE = 100.0
EMAIL_P99_LIMIT_MS = 500.0
STAGE_RATIO_TARGET = 0.5
RSS_TARGET_MB = 150.0


@dataclass
class BenchConfig:
    # throughput: a back-filled backlog each for the stage and (being much faster, so timed
    # over more messages) the raw baseline; same message size, topics and partitions
    messages: int = 20_000
    baseline_messages: int = 100_000
    # journeys: offered arrival rates (journeys/s), each held for `step_seconds`
    rates: list[float] = field(default_factory=lambda: [10, 25, 50, 75, 100, 150, 200])
    step_seconds: float = 60.0
    drain_seconds: float = 60.0  # wait at most this long after a step for its emails
    stop_above_ms: float = EMAIL_P99_LIMIT_MS  # stop raising the rate once p99 exceeds this
    clinicians: int = 40
    # what to run
    throughput: bool = True
    journeys: bool = True
    # where
    stack_dir: Path | None = None
    kafka_port: int = 29292
    pg_port: int = 25632
    results_dir: Path | None = None
    quick: bool = False
    service_log_level: str = "INFO"  # the services' default: their logging is part of the cost

    @classmethod
    def quick_preset(cls) -> BenchConfig:
        """About 1-2 minutes: a smaller backlog and three short load steps."""
        return cls(
            messages=3_000,
            baseline_messages=30_000,
            rates=[10, 25, 50],
            step_seconds=12.0,
            drain_seconds=30.0,
            quick=True,
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
