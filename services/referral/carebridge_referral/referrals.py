"""Opening and closing referrals: rules, SQL, queue and outbox events in one transaction."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from carebridge_contracts import AssessmentCompleted, CareTeamEnded
from carebridge_contracts.events.common import Modality, Urgency
from carebridge_contracts.events.referral import CareTeamEndReason, RequestedBy
from carebridge_referral import domain, matching, store
from carebridge_referral.models import ReferralRequest
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, forbidden, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.outbox import Outbox
from carebridge_shared.refusals import Refused, check, not_found, refuse

log = get_logger(__name__)


def _already_open(existing: domain.Referral) -> Refused:
    return refuse(
        "referral_already_open",
        "The patient already has an open referral; revoke or complete it first.",
        referral_id=str(existing.id),
        current_status=existing.status,
    )


async def open_for_psychiatrist(
    ctx: ServiceContext[ReferralSettings], caller: Principal, request: ReferralRequest
) -> tuple[domain.Referral, bool]:
    """Open a referral (True) or, for a retried identical request, return the open one.

    The requesting clinician must be one of the patient's psychiatrists (a psychiatric visit
    with them that is not cancelled); that is checked before anything about the patient's
    referrals is looked up, so a refusal says nothing about them (ADR 0015). Opening a referral
    never changes who the patient's psychiatrist is.

    A patient's interest in therapy at intake already opens a referral; when their
    psychiatrist refers them before it is matched, the psychiatrist's terms (modality,
    urgency, state) take it over (True, same id) instead of being refused.

    The matching lock makes the open-referral check and the insert one step for every
    writer; the partial unique index on open referrals is the backstop.
    """
    now = ctx.clock.now()
    patient_id, requester = request.patient_id, request.requesting_clinician_id
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        if not await store.is_psychiatrist_of(conn, requester, patient_id):
            raise _not_the_patients_psychiatrist(caller, patient_id)
        existing = await store.open_referral_for(conn, patient_id)
        if existing is not None:
            if existing.requested_by == "psychiatrist" and existing.same_request(
                request.state, request.modality, request.urgency, requester
            ):
                await _audit(conn, caller, "read", existing)
                return existing, False
            if existing.requested_by != "intake" or existing.matched:
                raise _already_open(existing)
            await store.take_over_referral(
                conn,
                existing.id,
                state=request.state,
                modality=request.modality,
                urgency=request.urgency,
                requesting_clinician_id=requester,
                now=now,
            )
            taken = await _reload(conn, existing.id)
            await matching.announce_and_serve(conn, ctx.outbox, taken, now)
            await _audit(conn, caller, "update", taken)
            return await _reload(conn, existing.id), True
        referral = _new_referral(
            patient_id,
            request.state,
            request.modality,
            request.urgency,
            requested_by="psychiatrist",
            requesting_clinician_id=requester,
            now=now,
        )
        await matching.open_referral(conn, ctx.outbox, referral, now)
        # The row names who opened it (a coordinator, or the psychiatrist themselves); the
        # referral and its event name the psychiatrist it is opened for.
        await _audit(conn, caller, "create", referral)
        return await _reload(conn, referral.id), True


def _not_the_patients_psychiatrist(caller: Principal, patient_id: str) -> Refused:
    target = Target("referral", None, patient_id)
    if caller.role == "coordinator":
        return forbidden(
            "requester_not_psychiatrist",
            "requesting_clinician_id must be one of the patient's psychiatrists (a psychiatric "
            "visit the patient booked with them that is not cancelled).",
            caller,
            target,
        )
    return forbidden(
        "not_treating",
        "Only one of the patient's psychiatrists (a psychiatric visit with them that is not "
        "cancelled) may refer them; ask the patient to book a psychiatric visit with you.",
        caller,
        target,
    )


async def _audit(
    conn: Connection, caller: Principal, action: audit.Action, referral: domain.Referral
) -> None:
    await audit.record(conn, caller, action, "referral", str(referral.id), referral.patient_id)


async def open_from_assessment(
    conn: Connection,
    outbox: Outbox,
    event: AssessmentCompleted,
    *,
    modality: Modality,
    now: datetime,
) -> None:
    """An intake with therapy interest opens a referral: one per assessment, and none while
    the patient already has an open referral (which a matched one is, see ADR 0004)."""
    await store.lock_matching(conn)
    if await store.referral_for_assessment(conn, event.assessment_id) is not None:
        return
    existing = await store.open_referral_for(conn, event.patient_id)
    if existing is not None:
        log.info(
            "intake_referral_skipped",
            reason="referral_already_open",
            referral_id=str(existing.id),
            assessment_id=str(event.assessment_id),
        )
        return
    referral = _new_referral(
        event.patient_id,
        event.state,
        modality,
        domain.intake_urgency(event.phq9_band, event.gad7_band),
        requested_by="intake",
        requesting_clinician_id=None,
        now=now,
        assessment_id=event.assessment_id,
    )
    await matching.open_referral(conn, outbox, referral, now)


async def close(
    ctx: ServiceContext[ReferralSettings],
    caller: Principal,
    referral_id: UUID,
    action: domain.Action,
) -> domain.Referral:
    """Revoke, or complete, a referral; its care team ends and its place goes to the queue.

    Allowed for the patient (revoke only: the route decides the roles), a clinician who treats
    the patient now, and a coordinator; a former clinician is refused."""
    if action not in ("revoke", "complete"):
        raise ValueError(action)
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        referral = await store.get_referral(conn, referral_id, for_update=True)
        if referral is None:
            raise not_found("referral")

        async def treats(clinician_id: str, patient_id: str) -> bool:
            return await store.treats(conn, clinician_id, patient_id)

        await require_patient_access(
            caller,
            referral.patient_id,
            treats,
            staff=("coordinator",),
            target=Target("referral", str(referral.id), referral.patient_id),
        )
        check(domain.transition_refusal(referral.status, referral.matched, action))
        status = domain.next_status(referral.status, referral.matched, action)
        assert status is not None
        await store.close_referral(conn, referral.id, status, now)
        if referral.care_team_id is not None:
            reason: CareTeamEndReason = "completed" if action == "complete" else "revoked"
            team = await store.end_care_team(conn, referral.care_team_id, reason, now)
            if team is not None:
                await ctx.outbox.add(
                    conn,
                    CareTeamEnded(
                        patient_id=team.patient_id,
                        care_team_id=team.id,
                        referral_id=referral.id,
                        therapist_id=team.therapist_id,
                        psychiatrist_id=team.psychiatrist_id,
                        reason_code=reason,
                    ),
                )
        log.info("referral_closed", referral_id=str(referral.id), status=status)
        await matching.serve_queue(conn, ctx.outbox, now)
        closed = await _reload(conn, referral.id)
        await _audit(conn, caller, "cancel" if action == "revoke" else "complete", closed)
        return closed


def _new_referral(
    patient_id: str,
    state: str,
    modality: Modality,
    urgency: Urgency,
    *,
    requested_by: RequestedBy,
    requesting_clinician_id: str | None,
    now: datetime,
    assessment_id: UUID | None = None,
) -> domain.Referral:
    return domain.Referral(
        id=uuid4(),
        patient_id=patient_id,
        state=state,
        modality=modality,
        urgency=urgency,
        requested_by=requested_by,
        requesting_clinician_id=requesting_clinician_id,
        assessment_id=assessment_id,
        status="active",
        hold_reason=None,
        therapist_id=None,
        care_team_id=None,
        created_at=now,
        updated_at=now,
    )


async def _reload(conn: Connection, referral_id: UUID) -> domain.Referral:
    referral = await store.get_referral(conn, referral_id)
    assert referral is not None
    return referral
