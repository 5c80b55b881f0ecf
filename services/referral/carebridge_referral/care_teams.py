"""Keeping the active care team's psychiatrist equal to the patient's current psychiatrist,
and telling every service when it changes (CareTeamMemberJoined / CareTeamMemberLeft).

A team formed without a psychiatrist gets one when referral learns of a psychiatric visit; a
newer visit with someone else replaces them; the last visit cancelled removes them. Callers
hold the matching lock, so a team that is being formed is seen or waits (ADR 0015).
"""

from __future__ import annotations

from carebridge_contracts import CareTeamMemberJoined, CareTeamMemberLeft
from carebridge_contracts.events.referral import MembershipReason
from carebridge_referral import store
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.outbox import Outbox

log = get_logger(__name__)


async def follow_current_psychiatrist(conn: Connection, outbox: Outbox, patient_id: str) -> None:
    """Make the patient's active team (if any) name their current psychiatrist, with events."""
    team = await store.active_care_team(conn, patient_id, lock="FOR UPDATE")
    if team is None:
        return
    current = await store.current_psychiatrist(conn, patient_id)
    previous = team.psychiatrist_id
    if current == previous:
        return
    await store.set_team_psychiatrist(conn, team.id, current)
    if previous is not None:
        left: MembershipReason = "psychiatrist_changed" if current else "no_psychiatric_visit"
        await outbox.add(
            conn,
            CareTeamMemberLeft(
                patient_id=patient_id,
                care_team_id=team.id,
                referral_id=team.referral_id,
                clinician_id=previous,
                member_role="psychiatrist",
                reason_code=left,
            ),
        )
    if current is not None:
        joined: MembershipReason = "psychiatrist_changed" if previous else "psychiatrist_learnt"
        await outbox.add(
            conn,
            CareTeamMemberJoined(
                patient_id=patient_id,
                care_team_id=team.id,
                referral_id=team.referral_id,
                clinician_id=current,
                member_role="psychiatrist",
                reason_code=joined,
            ),
        )
    log.info(
        "care_team_psychiatrist_changed",
        care_team_id=str(team.id),
        previous=previous,
        current=current,
    )
