"""Raw Kafka baseline, the minimal exactly-once loop and one carebridge stage, over the same
back-filled input, polling the same number of records (`consumer.MAX_POLL_RECORDS`).

For each kind: pin a fresh consumer group at the end of the input topic, back-fill it with
`messages` AssessmentCompleted envelopes, start the worker process, and read the output topic
until every message came out. Throughput is the steady rate between the first and the last
output record (broker timestamps), so consumer-group joins and process start-up do not count. The CPU each process used between
the worker's READY and its last output record (the worker; Kafka and PostgreSQL with their
children) is read with psutil and given per event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from carebridge_bench import kafka_tools
from carebridge_bench.memory import cpu_seconds
from carebridge_bench.stats import steady_rate
from carebridge_bench.worker import INPUT_TOPIC, OUTPUT_TOPIC, READY

Kind = Literal["baseline", "minimal", "stage"]
KINDS: tuple[Kind, ...] = ("baseline", "minimal", "stage")
WORKER = "worker"
BENCH_DIR = Path(__file__).resolve().parent.parent


@dataclass
class ThroughputResult:
    kind: str
    messages: int
    received: int
    input_bytes: int
    output_bytes: float
    per_second: float | None
    first_to_last_s: float | None
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms_per_event(self) -> dict[str, float]:
        if not self.received:
            return {}
        return {name: round(s * 1000 / self.received, 3) for name, s in self.cpu_seconds.items()}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_ms_per_event"] = self.cpu_ms_per_event
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}


def worker_env(bootstrap: str, database_url: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": f"{BENCH_DIR}{os.pathsep}{path}" if path else str(BENCH_DIR),
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
    }


async def _wait_ready(process: asyncio.subprocess.Process, log: Path, timeout: float) -> None:  # noqa: ASYNC109
    """Until the worker wrote its READY line (its logs go to the same file)."""
    started = time.monotonic()
    while READY not in (await asyncio.to_thread(log.read_text, errors="replace")).splitlines():
        if process.returncode is not None:
            raise RuntimeError(f"the {log.stem} exited during start-up; see {log}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the {log.stem} was not ready after {timeout:.0f}s; see {log}")
        await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def measure(
    kind: Kind,
    *,
    bootstrap: str,
    database_url: str,
    messages: int,
    run_id: str,
    log_dir: Path,
    servers: Mapping[str, int] | None = None,
    timeout: float = 600.0,  # noqa: ASYNC109 - bounds one measurement
) -> ThroughputResult:
    """One run of `kind`; `servers` (Kafka, PostgreSQL pids) are charged CPU with children."""
    group = f"bench-{kind}-{run_id}"
    prefix = f"{kind[0]}{run_id}-"
    await kafka_tools.pin_group(
        bootstrap, group, await kafka_tools.end_offsets(bootstrap, INPUT_TOPIC)
    )
    output_start = await kafka_tools.end_offsets(bootstrap, OUTPUT_TOPIC)
    input_bytes = await kafka_tools.backfill_assessments(bootstrap, prefix, messages)
    log = log_dir / f"worker-{kind}.log"
    output = await asyncio.to_thread(_open_log, log)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "carebridge_bench.worker", kind, "--group", group,
        env=worker_env(bootstrap, database_url),
        stdout=output, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    reader = asyncio.create_task(
        kafka_tools.read_from(
            bootstrap,
            OUTPUT_TOPIC,
            output_start,
            keep=lambda key: key.startswith(prefix),
            until=lambda found: len(found) >= messages,
            timeout=timeout,
        )
    )
    try:
        await _wait_ready(process, log, timeout=120)
        cpu_start = _cpu(process.pid, servers or {})
        seen = await reader
        cpu_end = _cpu(process.pid, servers or {})
    finally:
        reader.cancel()
        await _stop(process)
        output.close()
    stamps = [s.timestamp for s in seen]
    return ThroughputResult(
        kind=kind,
        messages=messages,
        received=len(seen),
        input_bytes=input_bytes,
        output_bytes=sum(len(s.value) for s in seen) / len(seen) if seen else 0.0,
        per_second=steady_rate(stamps),
        first_to_last_s=max(stamps) - min(stamps) if len(stamps) > 1 else None,
        cpu_seconds={
            name: round(cpu_end[name] - cpu_start[name], 3) for name in cpu_end if name in cpu_start
        },
    )


def _cpu(worker: int, servers: Mapping[str, int]) -> dict[str, float]:
    found = {WORKER: cpu_seconds(worker)}
    found.update({name: cpu_seconds(pid, children=True) for name, pid in servers.items()})
    return {name: used for name, used in found.items() if used is not None}


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def ratio(stage: ThroughputResult, baseline: ThroughputResult) -> float | None:
    if stage.per_second is None or not baseline.per_second:
        return None
    return stage.per_second / baseline.per_second


def order_of_repeat(repeat: int) -> tuple[Kind, ...]:
    """Every other repeat runs the kinds in reverse, so no kind always runs first (cold
    caches) or last (a broker busy compacting what the others wrote)."""
    return KINDS if repeat % 2 == 0 else tuple(reversed(KINDS))


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median, min, max and (max - min) / median of repeated figures."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "spread": None}
    median = statistics.median(values)
    return {
        "n": len(values),
        "median": round(median, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "spread": round((max(values) - min(values)) / median, 4) if median else None,
    }


def summarise_repeats(repeats: Sequence[Mapping[str, ThroughputResult]]) -> dict[str, Any]:
    """The throughput section: each kind's median rate and CPU per event, and the ratios taken
    within each repeat (side by side, so slow phases of a noisy machine cancel out)."""
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        runs = [r[kind] for r in repeats if kind in r]
        if not runs:
            continue
        rates = [r.per_second for r in runs if r.per_second is not None]
        names = sorted({name for r in runs for name in r.cpu_seconds})
        kinds[kind] = {
            "kind": kind,
            "messages": runs[0].messages,
            "received": min(r.received for r in runs),
            "input_bytes": runs[0].input_bytes,
            "output_bytes": runs[0].output_bytes,
            "per_second": spread(rates)["median"],
            "per_second_repeats": spread(rates),
            "cpu_ms_per_event": {
                name: spread([r.cpu_ms_per_event[name] for r in runs if name in r.cpu_seconds])[
                    "median"
                ]
                for name in names
            },
        }

    def ratios(top: str, bottom: str) -> dict[str, float | int | None]:
        found = [ratio(r[top], r[bottom]) for r in repeats if top in r and bottom in r]
        return spread([x for x in found if x is not None])

    return {
        **kinds,
        "repeats": [{kind: result.as_dict() for kind, result in r.items()} for r in repeats],
        "stage_vs_raw": ratios("stage", "baseline"),
        "stage_vs_minimal": ratios("stage", "minimal"),
        "minimal_vs_raw": ratios("minimal", "baseline"),
        "ratio": ratios("stage", "baseline")["median"],
    }
