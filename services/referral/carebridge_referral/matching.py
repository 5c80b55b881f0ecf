"""Serving the matching queue inside the caller's transaction: decisions, rows and events.

Callers hold the matching lock (`store.lock_matching`) for the whole transaction.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from carebridge_contracts import (
    CareTeamFormed,
    ReferralWaitlisted,
    TherapistMatched,
    TherapistRequested,
)
from carebridge_contracts.events.referral import WaitlistReason
from carebridge_referral import domain, store
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.outbox import Outbox

log = get_logger(__name__)


async def open_referral(
    conn: Connection, outbox: Outbox, referral: domain.Referral, now: datetime
) -> None:
    """Store a new referral, announce it, then serve the queue (it may be matched at once)."""
    await store.insert_referral(conn, referral)
    await announce_and_serve(conn, outbox, referral, now)


async def announce_and_serve(
    conn: Connection, outbox: Outbox, referral: domain.Referral, now: datetime
) -> None:
    """Publish the referral's current terms (TherapistRequested), then serve the queue."""
    await outbox.add(
        conn,
        TherapistRequested(
            patient_id=referral.patient_id,
            referral_id=referral.id,
            state=referral.state,
            modality=referral.modality,
            urgency=referral.urgency,
            requested_by=referral.requested_by,
            requesting_clinician_id=referral.requesting_clinician_id,
        ),
    )
    log.info(
        "referral_opened",
        referral_id=str(referral.id),
        requested_by=referral.requested_by,
        urgency=referral.urgency,
    )
    await serve_queue(conn, outbox, now)


async def serve_queue(conn: Connection, outbox: Outbox, now: datetime) -> None:
    """Match every waiting referral that can be matched now, urgent first then oldest;
    put the others on hold, announcing a hold only when its reason changed."""
    roster = await store.list_therapists(conn, for_update=True)
    waiting = await store.waiting_referrals(conn)
    by_id = {referral.id: referral for referral, _ in waiting}
    decisions = domain.allocate(
        [domain.WaitingReferral.of(r, consent_granted=consent) for r, consent in waiting],
        [therapist for therapist, _ in roster],
        store.loads_of(roster),
    )
    for item, decision in decisions:
        referral = by_id[item.id]
        if isinstance(decision, domain.Match):
            # The team's psychiatrist is the patient's current one (care_teams.py keeps it so),
            # whoever asked for the referral.
            psychiatrist = await store.current_psychiatrist(conn, referral.patient_id)
            await _match(conn, outbox, referral, decision.therapist_id, psychiatrist, now)
        elif (referral.status, referral.hold_reason) != ("on-hold", decision.reason):
            await _hold(conn, outbox, referral, decision.reason, now)


def _check_transition(referral: domain.Referral, action: domain.Action) -> None:
    # The queue only holds open, unmatched referrals; a revoked one can never get here.
    if domain.next_status(referral.status, referral.matched, action) is None:
        raise RuntimeError(f"referral {referral.id} cannot {action} from {referral.status}")


async def _match(
    conn: Connection,
    outbox: Outbox,
    referral: domain.Referral,
    therapist_id: str,
    psychiatrist_id: str | None,
    now: datetime,
) -> None:
    _check_transition(referral, "match")
    team = domain.CareTeam(
        id=uuid4(),
        patient_id=referral.patient_id,
        referral_id=referral.id,
        psychiatrist_id=psychiatrist_id,
        therapist_id=therapist_id,
        status="active",
        formed_at=now,
    )
    await store.insert_care_team(conn, team)
    await store.mark_matched(conn, referral.id, therapist_id, team.id, now)
    await outbox.add(
        conn,
        TherapistMatched(
            patient_id=referral.patient_id,
            referral_id=referral.id,
            therapist_id=therapist_id,
            psychiatrist_id=psychiatrist_id,
            modality=referral.modality,
            state=referral.state,
        ),
    )
    await outbox.add(
        conn,
        CareTeamFormed(
            patient_id=referral.patient_id,
            care_team_id=team.id,
            psychiatrist_id=psychiatrist_id,
            therapist_id=therapist_id,
        ),
    )
    log.info(
        "referral_matched",
        referral_id=str(referral.id),
        therapist_id=therapist_id,
        care_team_id=str(team.id),
    )


async def _hold(
    conn: Connection,
    outbox: Outbox,
    referral: domain.Referral,
    reason: WaitlistReason,
    now: datetime,
) -> None:
    _check_transition(referral, "hold")
    await store.mark_held(conn, referral.id, reason, now)
    await outbox.add(
        conn,
        ReferralWaitlisted(
            patient_id=referral.patient_id,
            referral_id=referral.id,
            state=referral.state,
            modality=referral.modality,
            urgency=referral.urgency,
            reason_code=reason,
        ),
    )
    log.info("referral_waitlisted", referral_id=str(referral.id), reason=reason)
