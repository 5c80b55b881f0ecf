"""Startup hook: upsert the clinician directory from a JSON seed file."""

from __future__ import annotations

from pathlib import Path

from carebridge_booking import store
from carebridge_booking.models import SeedFile
from carebridge_booking.settings import BookingSettings
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger

log = get_logger(__name__)


def load_seed(path: Path) -> SeedFile:
    """Parse and validate a seed file; raises on a malformed one so startup fails loudly."""
    return SeedFile.model_validate_json(path.read_bytes())


async def seed_clinicians(ctx: ServiceContext[BookingSettings]) -> None:
    settings = ctx.settings
    if not settings.clinician_seed_file:
        return
    seed = load_seed(Path(settings.clinician_seed_file))
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_clinician_directory(conn)
        for entry in seed.clinicians:
            await store.upsert_clinician(conn, entry.to_domain(entry.id))
    log.info("clinicians_seeded", count=len(seed.clinicians))
