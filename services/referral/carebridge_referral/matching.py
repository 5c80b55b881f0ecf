"""Serving the matching queue: the step every use case that may free or need a place ends with
(a referral opened or closed, consent granted or revoked, the roster changed).

It runs inside the caller's transaction, which holds the matching lock (`store.lock_matching`).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from carebridge_referral import domain, store
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.outbox import Outbox

log = get_logger(__name__)


async def serve_queue(conn: Connection, outbox: Outbox, now: datetime) -> None:
    """Match every waiting referral that can be matched now, urgent first then oldest;
    put the others on hold, announcing a hold only when its reason changed."""
    await _serve(conn, outbox, now, only=None)


async def serve_newcomer(
    conn: Connection, outbox: Outbox, now: datetime, referral_id: UUID
) -> None:
    """Decide one referral that just joined the queue (opened, or given new terms).

    The same decisions as `serve_queue`, without reading the queue: every transaction that
    changes the queue, the roster, capacity or consent ends by serving, so no other waiting
    referral could be matched before this one came, and a newcomer only takes a place, never
    frees one, so none can be now; their hold reasons depend only on the roster, which did
    not change. Opening a referral thus costs the same with 10 or 10,000 waiting.
    """
    await _serve(conn, outbox, now, only=referral_id)


async def _serve(conn: Connection, outbox: Outbox, now: datetime, *, only: UUID | None) -> None:
    roster = await store.list_therapists(conn, for_update=True)
    waiting = await store.waiting_referrals(conn, only)
    by_id = {referral.id: referral for referral, _ in waiting}
    decisions = domain.allocate(
        [domain.WaitingReferral.of(r, consent_granted=consent) for r, consent in waiting],
        [therapist for therapist, _ in roster],
        store.loads_of(roster),
    )
    for item, decision in decisions:
        referral = by_id[item.id]
        if isinstance(decision, domain.Match):
            psychiatrist = await store.current_psychiatrist(conn, referral.patient_id)
            formed = domain.form_team(referral, decision.therapist_id, psychiatrist, now)
            await store.insert_care_team(conn, formed.team)
            await store.mark_matched(conn, referral.id, decision.therapist_id, formed.team.id, now)
            for event in formed.events:
                await outbox.add(conn, event)
            log.info(
                "referral_matched",
                referral_id=str(referral.id),
                therapist_id=decision.therapist_id,
                care_team_id=str(formed.team.id),
            )
        elif (waitlisted := domain.hold(referral, decision.reason)) is not None:
            await store.mark_held(conn, referral.id, decision.reason, now)
            await outbox.add(conn, waitlisted)
            log.info("referral_waitlisted", referral_id=str(referral.id), reason=decision.reason)
