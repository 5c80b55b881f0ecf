"""Use cases of the patient's consents: granting one lets waiting referrals be matched,
revoking one stops sharing the care plan with the therapist (and holds referrals nobody took
yet); reading them. Only the patient grants or revokes their consent."""

from __future__ import annotations

from uuid import uuid4

from carebridge_contracts import ConsentGranted, ConsentRevoked
from carebridge_contracts.events.referral import ConsentScope
from carebridge_referral import domain, matching, store
from carebridge_referral.access import require_access
from carebridge_referral.settings import ReferralSettings
from carebridge_shared import audit
from carebridge_shared.auth import Principal, Target, require_patient_access
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found

log = get_logger(__name__)


async def grant(
    ctx: ServiceContext[ReferralSettings], caller: Principal, patient_id: str, scope: ConsentScope
) -> tuple[domain.Consent, bool]:
    """Grant (True), or return the consent already granted (False: nothing is emitted)."""
    await require_patient_access(caller, patient_id, target=Target("consent", scope, patient_id))
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        current = await store.get_consent(conn, patient_id, scope, lock="FOR UPDATE")
        if current is not None and current.granted:
            return current, False
        consent = domain.Consent(
            patient_id=patient_id,
            scope=scope,
            consent_id=uuid4(),
            status="granted",
            granted_at=now,
        )
        await store.save_consent(conn, consent)
        await ctx.outbox.add(
            conn,
            ConsentGranted(patient_id=patient_id, consent_id=consent.consent_id, scope=scope),
        )
        log.info("consent_granted", consent_id=str(consent.consent_id), scope=scope)
        await matching.serve_queue(conn, ctx.outbox, now)
    return consent, True


async def revoke(
    ctx: ServiceContext[ReferralSettings], caller: Principal, patient_id: str, scope: ConsentScope
) -> domain.Consent:
    """Revoke the current consent; revoking a revoked one changes nothing."""
    await require_patient_access(caller, patient_id, target=Target("consent", scope, patient_id))
    now = ctx.clock.now()
    async with ctx.pool.acquire() as conn, conn.transaction():
        await store.lock_matching(conn)
        current = await store.get_consent(conn, patient_id, scope, lock="FOR UPDATE")
        if current is None:
            raise not_found("consent")
        if not current.granted:
            return current
        revoked = domain.Consent(
            patient_id=patient_id,
            scope=scope,
            consent_id=current.consent_id,
            status="revoked",
            granted_at=current.granted_at,
            revoked_at=now,
        )
        await store.save_consent(conn, revoked)
        await ctx.outbox.add(
            conn,
            ConsentRevoked(patient_id=patient_id, consent_id=current.consent_id, scope=scope),
        )
        log.info("consent_revoked", consent_id=str(current.consent_id), scope=scope)
        await matching.serve_queue(conn, ctx.outbox, now)
    return revoked


async def list_for(
    ctx: ServiceContext[ReferralSettings], caller: Principal, patient_id: str
) -> list[domain.Consent]:
    """The patient's consents, for the patient and a clinician who treats them now."""
    async with ctx.pool.acquire() as conn, conn.transaction():
        target = Target("consent", None, patient_id)
        await require_access(conn, caller, patient_id, target, coordinator=False)
        found = await store.list_consents(conn, patient_id)
        await audit.record_many(
            conn, caller, "read", [audit.Access("consent", c.scope, patient_id) for c in found]
        )
    return found


async def get(
    ctx: ServiceContext[ReferralSettings], caller: Principal, patient_id: str, scope: ConsentScope
) -> domain.Consent:
    async with ctx.pool.acquire() as conn, conn.transaction():
        target = Target("consent", scope, patient_id)
        await require_access(conn, caller, patient_id, target, coordinator=False)
        consent = await store.get_consent(conn, patient_id, scope)
        if consent is None:
            raise not_found("consent")
        await audit.record(conn, caller, "read", "consent", scope, patient_id)
    return consent
