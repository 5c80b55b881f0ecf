"""The throughput comparison in miniature on the real Kafka and PostgreSQL: the three worker
processes start and carry every back-filled message to the output topic; the stage does so
through the services' plumbing (inbox, effect, outbox, relay), the minimal loop through its
own set-based transaction. No speed is asserted."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from carebridge_bench import throughput
from carebridge_bench.minimal import MINIMAL_SCHEMA
from carebridge_bench.worker import STAGE_SCHEMA

pytestmark = pytest.mark.integration

MESSAGES = 12


@pytest.mark.parametrize("kind", ["baseline", "minimal", "stage"])
async def test_a_tiny_backlog_goes_through(
    kind: throughput.Kind, stack_endpoints: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    result = await throughput.measure(
        kind,
        bootstrap=stack_endpoints.kafka_bootstrap,
        database_url=fresh_database_url,
        messages=MESSAGES,
        run_id=uuid.uuid4().hex[:6],
        log_dir=tmp_path,
        timeout=120,
    )
    assert (result.messages, result.received) == (MESSAGES, MESSAGES)
    assert result.input_bytes > 0 and result.output_bytes > 0
    assert result.first_to_last_s is not None  # (a dozen records may share one millisecond)
    assert result.cpu_seconds.get("worker") is not None
    if kind == "minimal":
        conn = await asyncpg.connect(fresh_database_url)
        try:
            counts = await conn.fetchrow(
                f"SELECT (SELECT count(*) FROM {MINIMAL_SCHEMA}.stage_effects) AS effects,"
                f" (SELECT count(*) FROM {MINIMAL_SCHEMA}.inbox) AS inbox,"
                f" (SELECT count(*) FROM {MINIMAL_SCHEMA}.outbox) AS outbox,"
                f" (SELECT max(last_sequence) FROM {MINIMAL_SCHEMA}.stream_sequences) AS top"
            )
        finally:
            await conn.close()
        # 12 messages over 3 patients: 4 each, numbered 1..4
        assert tuple(counts) == (MESSAGES, MESSAGES, MESSAGES, 4)
    if kind == "stage":
        conn = await asyncpg.connect(fresh_database_url)
        try:
            effects = await conn.fetchval(f"SELECT count(*) FROM {STAGE_SCHEMA}.stage_effects")
            inbox = await conn.fetchval(f"SELECT count(*) FROM {STAGE_SCHEMA}.inbox")
            unpublished = await conn.fetchval(
                f"SELECT count(*) FROM {STAGE_SCHEMA}.outbox WHERE published_at IS NULL"
            )
        finally:
            await conn.close()
        assert (effects, inbox, unpublished) == (MESSAGES, MESSAGES, 0)
