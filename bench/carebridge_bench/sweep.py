"""The load sweep: one open-loop step per offered rate, each summarised per stage, stopping
once the booking-to-email p99 passes the limit or journeys fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from carebridge_bench import kafka_tools
from carebridge_bench.journeys import JourneyClient, StepRun, run_step
from carebridge_bench.stats import Summary, summarise_ms
from carebridge_bench.timeline import (
    TARGET_STAGE,
    WATCHED,
    Instants,
    MailReader,
    journey_instants,
    queued_instants,
    stage_latencies,
    topic_instants,
)

MAX_ERROR_RATIO = 0.01  # more failed or unconfirmed journeys than this ends the sweep


@dataclass
class StepResult:
    rate: float
    seconds: float
    scheduled: int
    booked: int
    confirmed: int  # booked journeys whose confirmation e-mail reached the sink
    errors: dict[str, int]
    max_in_flight: int
    start_lag: Summary | None  # how late journeys started against their schedule
    stages: dict[str, Summary | None]
    confirmed_per_s: float | None
    booking_tries_per_journey: float
    stop_reason: str | None = None
    # CPU seconds per process from the step's start to the end of its drain, and that window
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpu_window_s: float = 0.0

    @property
    def target_p99(self) -> float | None:
        summary = self.stages.get(TARGET_STAGE)
        return summary.p99 if summary else None

    @property
    def failed(self) -> int:
        return self.scheduled - self.confirmed

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.rate,
            "seconds": self.seconds,
            "scheduled": self.scheduled,
            "booked": self.booked,
            "confirmed": self.confirmed,
            "errors": self.errors,
            "max_in_flight": self.max_in_flight,
            "start_lag_ms": self.start_lag.as_dict() if self.start_lag else None,
            "confirmed_per_s": round(self.confirmed_per_s, 2) if self.confirmed_per_s else None,
            "booking_tries_per_journey": round(self.booking_tries_per_journey, 2),
            "stages_ms": {k: v.as_dict() if v else None for k, v in self.stages.items()},
            "stop_reason": self.stop_reason,
            "cpu_seconds": self.cpu_seconds,
            "cpu_window_s": round(self.cpu_window_s, 2),
        }


def _error_kinds(run: StepRun) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for journey in run.journeys:
        if journey.error:
            kind = journey.error.split(":")[0][:80]
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def summarise_step(run: StepRun, topics: dict[str, Any], mail: MailReader) -> StepResult:
    instants = []
    confirmed_at: list[float] = []
    for journey in run.journeys:
        email = mail.confirmation_at(journey.email) if journey.booked else None
        if email is not None:
            confirmed_at.append(email)
        instants.append(journey_instants(journey, topics.get(journey.patient_id), email))
    booked = [j for j in run.journeys if j.booked]
    errors = _error_kinds(run)
    unconfirmed = len(booked) - len(confirmed_at)
    if unconfirmed:
        errors["booked but no confirmation email"] = unconfirmed
    lags = [j.started - j.scheduled for j in run.journeys if j.started is not None]
    span = max(confirmed_at) - run.started_at if confirmed_at else 0.0
    tries = sum(1 + j.not_yet_eligible + j.slot_conflicts for j in booked)
    return StepResult(
        rate=run.rate,
        seconds=run.seconds,
        scheduled=len(run.journeys),
        booked=len(booked),
        confirmed=len(confirmed_at),
        errors=errors,
        max_in_flight=run.max_in_flight,
        start_lag=summarise_ms(lags),
        stages=stage_latencies(instants),
        confirmed_per_s=len(confirmed_at) / span if span > 0 else None,
        booking_tries_per_journey=tries / len(booked) if booked else 0.0,
    )


def stop_reason(result: StepResult, limit_ms: float) -> str | None:
    """Why the sweep should not offer more load after this step (None: go on)."""
    if result.scheduled and result.failed / result.scheduled > MAX_ERROR_RATIO:
        return f"{result.failed} of {result.scheduled} journeys not confirmed"
    p99 = result.target_p99
    if p99 is None:
        return "no journey was confirmed"
    if p99 > limit_ms:
        return f"{TARGET_STAGE} p99 {p99:.0f} ms > {limit_ms:.0f} ms"
    return None


def highest_rate_within(results: list[StepResult], limit_ms: float) -> float | None:
    """The highest offered rate whose step met the limit with (almost) every journey done."""
    good = [
        r.rate
        for r in results
        if r.target_p99 is not None
        and r.target_p99 <= limit_ms
        and r.scheduled
        and r.failed / r.scheduled <= MAX_ERROR_RATIO
    ]
    return max(good, default=None)


@dataclass
class SweepConfig:
    rates: list[float]
    step_seconds: float
    drain_seconds: float
    stop_above_ms: float
    run_id: str
    journey_timeout: float = 60.0
    settle_seconds: float = 2.0
    database_url: str | None = None  # to read when notification queued each confirmation
    on_step: Callable[[int, float, int], None] = field(default=lambda *_: None)
    on_journey: Callable[[], None] = field(default=lambda: None)
    cpu_now: Callable[[], dict[str, float]] = field(default=dict)  # CPU seconds per process


WARM_UP_STEP = 99  # the warm-up's patients are bn<run>-99-…, apart from every step's


async def warm_up(
    client: JourneyClient,
    *,
    rate: float,
    seconds: float,
    on_start: Callable[[], None] | None = None,
) -> int:
    """Journeys at `rate` for `seconds`, not measured; returns how many were started (the
    sweep's journeys come after them, on clinician-days of their own)."""
    run = await run_step(
        client, step=WARM_UP_STEP, rate=rate, seconds=seconds, first_index=0, on_start=on_start
    )
    return len(run.journeys)


async def sweep(
    client: JourneyClient,
    bootstrap: str,
    mail: MailReader,
    config: SweepConfig,
    *,
    first_index: int = 0,
) -> list[StepResult]:
    results: list[StepResult] = []
    index = first_index
    for step, rate in enumerate(config.rates):
        config.on_step(step, rate, round(rate * config.step_seconds))
        start = {
            str(topic): await kafka_tools.end_offsets(bootstrap, str(topic)) for topic in WATCHED
        }
        cpu_before, window_start = config.cpu_now(), time.monotonic()
        run = await run_step(
            client,
            step=step,
            rate=rate,
            seconds=config.step_seconds,
            first_index=index,
            journey_timeout=config.journey_timeout,
            on_start=config.on_journey,
        )
        index += len(run.journeys)
        booked = [j for j in run.journeys if j.booked]
        deadline = time.monotonic() + config.drain_seconds
        while time.monotonic() < deadline:
            mail.poll()
            if all(mail.confirmation_at(j.email) is not None for j in booked):
                break
            await asyncio.sleep(0.5)
        prefix = f"bn{config.run_id}-{step:02d}-"
        topics = await topic_instants(bootstrap, start, prefix=prefix)
        if config.database_url is not None:
            for patient, at in (await queued_instants(config.database_url, prefix)).items():
                topics.setdefault(patient, Instants()).first("queued", at)
        result = summarise_step(run, topics, mail)
        cpu_after = config.cpu_now()
        result.cpu_window_s = time.monotonic() - window_start
        result.cpu_seconds = {
            name: round(cpu_after[name] - cpu_before[name], 3)
            for name in cpu_after
            if name in cpu_before
        }
        results.append(result)
        result.stop_reason = stop_reason(result, config.stop_above_ms)
        if result.stop_reason is not None:
            break
        await asyncio.sleep(config.settle_seconds)
    return results
