"""The patient's consents: granting one lets waiting referrals be matched, revoking one stops
sharing the care plan with the therapist (and holds referrals nobody took yet)."""

from __future__ import annotations

from uuid import uuid4

from carebridge_contracts import ConsentGranted, ConsentRevoked
from carebridge_contracts.events.referral import ConsentScope
from carebridge_referral import domain, matching, store
from carebridge_referral.settings import ReferralSettings
from carebridge_shared.context import ServiceContext
from carebridge_shared.logging import get_logger
from carebridge_shared.refusals import not_found

log = get_logger(__name__)


async def grant(
    ctx: ServiceContext[ReferralSettings], patient_id: str, scope: ConsentScope
) -> tuple[domain.Consent, bool]:
    """Grant (True), or return the consent already granted (False: nothing is emitted)."""
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
    ctx: ServiceContext[ReferralSettings], patient_id: str, scope: ConsentScope
) -> domain.Consent:
    """Revoke the current consent; revoking a revoked one changes nothing."""
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
