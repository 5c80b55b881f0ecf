"""Use cases of referrals: opening one (a psychiatrist's request, or intake's therapy interest),
closing one, and reading them. Each runs in one transaction: access, store reads, a rule from
`domain`, store writes, outbox events, the audit row."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from carebridge_contracts import AssessmentCompleted
from carebridge_referral import domain, matching, store
from carebridge_referral.access import require_access
from carebridge_referral.models import ReferralRequest
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, forbidden, require_self
from carebridge_shared.consumer import EventContext
from carebridge_shared.context import ServiceContext
from carebridge_shared.db import Connection
from carebridge_shared.logging import get_logger
from carebridge_shared.outbox import Outbox
from carebridge_shared.refusals import Refused, check, not_found, refuse

log = get_logger(__name__)


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
        await _require_requester(conn, caller, request)
        await store.lock_matching(conn)
        if not await store.is_psychiatrist_of(conn, requester, patient_id):
            raise _not_the_patients_psychiatrist(caller, patient_id)
        existing = await store.open_referral_for(conn, patient_id)
        if existing is not None:
            return await _retry_or_take_over(conn, ctx.outbox, caller, existing, request, now)
        referral = domain.new_referral(
            patient_id,
            request.state,
            request.modality,
            request.urgency,
            requested_by="psychiatrist",
            requesting_clinician_id=requester,
            now=now,
        )
        await store.insert_referral(conn, referral)
        await _announce(conn, ctx.outbox, referral)
        await matching.serve_newcomer(conn, ctx.outbox, now, referral.id)
        # The row names who opened it (a coordinator, or the psychiatrist themselves); the
        # referral and its event name the psychiatrist it is opened for.
        await _audit(conn, caller, "create", referral)
        return await _reload(conn, referral.id), True


async def _require_requester(conn: Connection, caller: Principal, request: ReferralRequest) -> None:
    """A clinician refers in their own name, and only a psychiatrist does: a therapist is
    refused; a coordinator refers on behalf of a psychiatrist."""
    if caller.role != "clinician":
        return
    target = Target("referral", None, request.patient_id)
    require_self(
        caller, "clinician", request.requesting_clinician_id, "requesting_clinician_id", target
    )
    if await store.get_therapist(conn, caller.sub) is not None:
        raise forbidden(
            "psychiatrist_required", "Therapists do not open referrals.", caller, target
        )


async def _retry_or_take_over(
    conn: Connection,
    outbox: Outbox,
    caller: Principal,
    existing: domain.Referral,
    request: ReferralRequest,
    now: datetime,
) -> tuple[domain.Referral, bool]:
    """The patient has an open referral: the same request again returns it (False); an
    unmatched one intake opened takes the psychiatrist's terms (True); anything else is
    refused."""
    requester = request.requesting_clinician_id
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
    await _announce(conn, outbox, taken)
    await matching.serve_newcomer(conn, outbox, now, taken.id)
    await _audit(conn, caller, "update", taken)
    return await _reload(conn, existing.id), True


async def assessment_completed(
    ctx: EventContext[ReferralSettings], event: AssessmentCompleted
) -> None:
    """An intake assessment: its scores are the baseline of the outcome trend; with therapy
    interest it opens a referral, one per assessment, and none while the patient already has
    an open referral (which a matched one is, see ADR 0004)."""
    conn, now = ctx.conn, ctx.clock.now()
    await store.record_intake_measure(conn, event)
    if not event.therapy_interest:
        return
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
    referral = domain.new_referral(
        event.patient_id,
        event.state,
        ctx.settings.default_modality,
        domain.intake_urgency(event.phq9_band, event.gad7_band),
        requested_by="intake",
        requesting_clinician_id=None,
        now=now,
        assessment_id=event.assessment_id,
    )
    await store.insert_referral(conn, referral)
    await _announce(conn, ctx.outbox, referral)
    await matching.serve_newcomer(conn, ctx.outbox, now, referral.id)


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
        target = Target("referral", str(referral.id), referral.patient_id)
        await require_access(conn, caller, referral.patient_id, target)
        check(domain.transition_refusal(referral.status, referral.matched, action))
        status = domain.next_status(referral.status, referral.matched, action)
        assert status is not None
        await store.close_referral(conn, referral.id, status, now)
        if referral.care_team_id is not None:
            reason = domain.close_reason(action)
            team = await store.end_care_team(conn, referral.care_team_id, reason, now)
            if team is not None:
                await ctx.outbox.add(conn, domain.care_team_ended(team, reason))
        log.info("referral_closed", referral_id=str(referral.id), status=status)
        await matching.serve_queue(conn, ctx.outbox, now)
        closed = await _reload(conn, referral.id)
        await _audit(conn, caller, "cancel" if action == "revoke" else "complete", closed)
        return closed


async def list_visible(
    ctx: ServiceContext[ReferralSettings],
    caller: Principal,
    *,
    patient_id: str | None,
    status: domain.ReferralStatus | None,
    therapist_id: str | None,
    limit: int,
) -> list[domain.Referral]:
    """Referrals, oldest first, each read audited. Patients and clinicians name a patient they
    may see, or a therapist themselves (their active referrals only); coordinators see all."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        if patient_id is not None:
            await require_access(conn, caller, patient_id, Target("referrals", None, patient_id))
        elif caller.role != "coordinator" and not (
            caller.role == "clinician" and therapist_id == caller.sub
        ):
            raise forbidden(
                "patient_required",
                "Name a patient (patient_id), or yourself as therapist_id.",
                caller,
                Target("referrals", therapist_id),
            )
        if patient_id is None and caller.role == "clinician":
            # A therapist's own list holds only the referrals they still take part in (an
            # active match): not those of patients they no longer treat (ADR 0015).
            if status not in (None, "active"):
                return []
            status = "active"
        found = await store.list_referrals(
            conn, patient_id=patient_id, status=status, therapist_id=therapist_id, limit=limit
        )
        await audit.record_many(
            conn, caller, "read", [audit.Access("referral", str(r.id), r.patient_id) for r in found]
        )
    return found


async def get(
    ctx: ServiceContext[ReferralSettings], caller: Principal, referral_id: UUID
) -> domain.Referral:
    async with ctx.pool.acquire() as conn, conn.transaction():
        referral = await store.get_referral(conn, referral_id)
        if referral is None:
            raise not_found("referral")
        target = Target("referral", str(referral_id), referral.patient_id)
        await require_access(conn, caller, referral.patient_id, target)
        await _audit(conn, caller, "read", referral)
    return referral


async def _announce(conn: Connection, outbox: Outbox, referral: domain.Referral) -> None:
    await outbox.add(conn, domain.therapist_requested(referral))
    log.info(
        "referral_opened",
        referral_id=str(referral.id),
        requested_by=referral.requested_by,
        urgency=referral.urgency,
    )


def _already_open(existing: domain.Referral) -> Refused:
    return refuse(
        "referral_already_open",
        "The patient already has an open referral; revoke or complete it first.",
        referral_id=str(existing.id),
        current_status=existing.status,
    )


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


async def _reload(conn: Connection, referral_id: UUID) -> domain.Referral:
    referral = await store.get_referral(conn, referral_id)
    assert referral is not None
    return referral
