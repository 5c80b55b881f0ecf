"""Raw Kafka baseline against one carebridge stage, over the same back-filled input.

For each kind: pin a fresh consumer group at the end of the input topic, back-fill it with
`messages` AssessmentCompleted envelopes, start the worker process, and read the output topic
until every message came out. Throughput is the steady rate between the first and the last
output record (broker timestamps), so consumer-group joins and process start-up do not count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from carebridge_bench import kafka_tools
from carebridge_bench.stats import steady_rate
from carebridge_bench.worker import INPUT_TOPIC, OUTPUT_TOPIC, READY

Kind = Literal["baseline", "stage"]
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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
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
    timeout: float = 600.0,  # noqa: ASYNC109 - bounds one measurement
) -> ThroughputResult:
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
        seen = await reader
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
    )


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def ratio(stage: ThroughputResult, baseline: ThroughputResult) -> float | None:
    if stage.per_second is None or not baseline.per_second:
        return None
    return stage.per_second / baseline.per_second
