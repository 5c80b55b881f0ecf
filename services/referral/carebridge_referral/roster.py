"""Use cases of the therapist roster referral matches against: a change frees or takes places,
so it serves the queue; reading it."""

from __future__ import annotations

from pathlib import Path

from carebridge_referral import domain, matching, store
from carebridge_referral.models import SeedFile, TherapistBody
from carebridge_referral.settings import ReferralSettings
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found

log = get_logger(__name__)


def to_domain(therapist_id: str, body: TherapistBody) -> domain.Therapist:
    return domain.Therapist(
        id=therapist_id,
        licence_states=frozenset(body.licence_states),
        modalities=frozenset(body.modalities),
        capacity=body.capacity,
        active=body.active,
    )


async def put_therapist(
    ctx: ServiceContext[ReferralSettings], therapist_id: str, body: TherapistBody
) -> tuple[domain.Therapist, int, bool]:
    """Create or replace; a new licence, modality or place goes to the waitlist at once.

    Lowering the capacity below the current load ends nobody's care team: the therapist
    just takes no one new until the load is below it again.
    """
    therapist = to_domain(therapist_id, body)
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        created = await store.upsert_therapist(conn, therapist)
        await matching.serve_queue(conn, ctx.outbox, now)
        found = await store.get_therapist(conn, therapist_id)
    assert found is not None
    log.info("therapist_saved", therapist_id=therapist_id, created=created)
    return found[0], found[1], created


async def list_therapists(
    ctx: ServiceContext[ReferralSettings],
    *,
    state: str | None,
    modality: str | None,
    active: bool | None,
) -> list[tuple[domain.Therapist, int]]:
    """Therapists with their load (active care teams), by id."""
    async with ctx.pool.acquire() as conn:
        return await store.list_therapists(conn, state=state, modality=modality, active=active)


async def get_therapist(
    ctx: ServiceContext[ReferralSettings], therapist_id: str
) -> tuple[domain.Therapist, int]:
    async with ctx.pool.acquire() as conn:
        found = await store.get_therapist(conn, therapist_id)
    if found is None:
        raise not_found("therapist")
    return found


def load_seed(path: Path) -> SeedFile:
    """Parse and validate a seed file; raises on a malformed one so startup fails loudly."""
    return SeedFile.model_validate_json(path.read_bytes())


async def seed_therapists(ctx: ServiceContext[ReferralSettings]) -> None:
    """Startup hook: add the seed's therapists that are missing; ones already stored keep
    their values, so a capacity changed through the API survives a restart."""
    settings = ctx.settings
    if not settings.therapist_seed_file:
        return
    seed = load_seed(Path(settings.therapist_seed_file))
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        added = 0
        for entry in seed.therapists:
            added += await store.upsert_therapist(conn, to_domain(entry.id, entry), replace=False)
        if added:
            await matching.serve_queue(conn, ctx.outbox, now)
    log.info("therapists_seeded", count=len(seed.therapists), added=added)
